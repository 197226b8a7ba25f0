"""Facts about the machine and library versions, recorded beside every benchmark result, and
the reading of gnnkit's on/off environment switches."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_name", "environment", "switched_off"]

_OFF = ("0", "false", "no", "off")


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` (``GNNKIT_JIT``, ``GNNKIT_FUSED_GAT``,
    ``GNNKIT_HUGE_PAGES``, ``GNNKIT_NARROW_SPMM``, ``GNNKIT_KERNEL_CACHE``) is set to 0, false,
    no or off, in any case; unset means on."""
    return os.environ.get(variable, "1").strip().lower() in _OFF


def cpu_name() -> str:
    """The CPU model name (from ``/proc/cpuinfo`` where available)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """A JSON-ready description of where a benchmark ran.

    Keys: ``torch``, ``torch_geometric``, ``torch_scatter`` (``None`` when absent), ``python``,
    ``device`` (the device name, with the GPU model on CUDA), ``threads``, ``cpu``,
    ``cpu_count``, ``date`` (UTC, ISO 8601).
    """
    import torch_geometric

    try:
        import torch_scatter

        scatter_version = torch_scatter.__version__
    except ImportError:
        scatter_version = None
    device = torch.device(device)
    device_name = str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        device_name = f"{device} ({torch.cuda.get_device_name(device)})"
    return {
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "torch_scatter": scatter_version,
        "python": platform.python_version(),
        "device": device_name,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
