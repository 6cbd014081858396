"""Peak memory of a block of work, for the benchmarks: CUDA allocator peak, or peak RSS on the CPU."""

from __future__ import annotations

from pathlib import Path

import torch


def _rss_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from /proc, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0).

    Needed at the start of a spawned child: ``ru_maxrss`` and ``VmHWM`` carry over the parent's
    resident set from the fork that precedes the exec.
    """
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """Peak RSS of this process since start or the last ``reset_peak_rss``, in MiB."""
    return _rss_kib("VmHWM") / 1024


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib``: memory above the starting state.

    On the CPU it reads the process's peak RSS, reset at entry by writing 5 to
    ``/proc/self/clear_refs`` (Linux >= 4.0); ``ru_maxrss`` cannot be reset and is inherited over
    fork, so run each measurement in a fresh (spawned) process.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            reset_peak_rss()
            self._start = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _rss_kib("VmHWM") * 1024
        self.mib = (peak - self._start) / 2**20
