"""The benchmark harness: gnnkit's recipes trained side by side with PyG's references.

Library only; the ``gnnkit bench`` command is :mod:`gnnkit.cli.bench`. One small function
per task trains gnnkit's recipe (:mod:`gnnkit.recipes`) and, with ``compare="pyg"``, PyG's
reference of it (:mod:`gnnkit.bench.pyg`) on the same data and seeds (node classification
also takes ``"pyg-tuned"``, the same PyG layers in their fastest configuration,
:mod:`gnnkit.bench.pyg_tuned`, or both: ``"pyg,pyg-tuned"``), and returns a result that
renders as a table, a JSON payload and a figure:

- :func:`gnnkit.bench.node.run_node_benchmark`: node classification (Cora, ogbn-arxiv...),
  full-batch, mini-batch or multi-process;
- :func:`gnnkit.bench.graph.run_graph_benchmark`: OGB molecular property prediction;
- :func:`gnnkit.bench.link.run_link_benchmark`: OGB ogbl-ddi link prediction.

What they share is :mod:`gnnkit.bench.harness`: implementations, checks, seeds, how the two
implementations are interleaved, and the results API (the :class:`~gnnkit.bench.harness.Comparison`
base of every result, summaries and figures) that the scripts collecting several runs,
``benchmarks/*_table.py``, use too.

Nothing is imported here, so that ``gnnkit bench node`` loads the node benchmark alone.
"""
