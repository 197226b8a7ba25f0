"""Exceptions that gnnkit raises for problems a user can fix.

Every error a user can cause derives from :class:`GnnkitError`; the CLI turns these into one
readable line on stderr and exit code 2. Errors about bad arguments also derive from
:class:`ValueError`, so ``except ValueError`` keeps working for code written against PyG.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "DataUnavailableError",
    "DatasetError",
    "GnnkitError",
    "InputError",
    "OutputError",
    "SecondDerivativeError",
    "UnknownDatasetError",
]


class GnnkitError(Exception):
    """Base class for errors caused by user input, files or the environment (not by bugs)."""


class InputError(GnnkitError, ValueError):
    """An argument has the wrong type, shape, dtype or value. The message says how to fix it."""


class DatasetError(GnnkitError):
    """A dataset could not be resolved, verified or loaded."""


class UnknownDatasetError(DatasetError, ValueError):
    """A dataset name that is not in the registry."""


class ChecksumError(DatasetError):
    """A file's sha256 differs from the manifest."""


class DataUnavailableError(DatasetError):
    """No source (data root, mirror, upstream) could provide a dataset's files."""


class CheckpointError(GnnkitError):
    """A checkpoint is truncated, corrupt, or was written by a different model."""


class OutputError(GnnkitError, OSError):
    """A file or folder cannot be written: not a regular file, no permission, a read-only or
    full disk, a file where a folder is expected. The message names the path and the fix."""


class SecondDerivativeError(GnnkitError, RuntimeError):
    """A backward pass with ``create_graph=True`` (a second derivative) reached one of gnnkit's
    compiled kernels, whose backward passes are differentiable once."""
