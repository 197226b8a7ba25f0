"""gnnkit's benchmarks: scripts and the reference models they compare against.

An importable package so that the PyG reference models (:mod:`benchmarks.references`) can be
registered under the ``gnnkit.references`` entry-point group. The library never imports this
package directly; it finds the references through that group.
"""
