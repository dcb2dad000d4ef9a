"""Where and when benchmark numbers were measured: the machine (:func:`machine_info`), the time, and the
peak memory of a cell (:func:`peak`)."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any, Dict, Optional

import torch

from ..evaluation import peak_memory

__all__ = ["machine_info", "cpu_model", "peak", "now"]


def cpu_model() -> str:
    """The processor's model name from ``/proc/cpuinfo``, or ``""`` where there is none."""
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_info(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """Where the numbers were measured: processor, CPU count, torch threads, device (and GPU name)."""
    info: Dict[str, Any] = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def peak(device: torch.device) -> Dict[str, Any]:
    """The record fields of peak memory: the process's peak RSS, and on CUDA the peak allocated memory."""
    mem = peak_memory(device if device.type == "cuda" else None)
    out = {"peak_rss_mib": mem.get("max_rss_mib")}
    if "cuda_max_allocated_mib" in mem and device.type == "cuda":
        out["peak_cuda_mib"] = mem["cuda_max_allocated_mib"]
    return out
