"""Helpers shared by the benchmark scripts (the ``benchmarks`` folder is a set of scripts, not a package).

Each script puts its own folder on ``sys.path`` before importing it, so the import works both for
``python benchmarks/<script>.py`` and for tests that load a script from its file.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading

import torch


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled RSS above the starting level (CPU).

    CPU figures are the resident-set growth of this process while the block runs (sampled every 5 ms), so
    they depend on what ran before in the same process.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._base, self._peak, self._stop = self._rss(), self._rss(), threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.005):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._peak, self._rss()) / 2**20 - self._base / 2**20


def machine(device: torch.device) -> str:
    """One line naming the CPU, core count, torch threads, GPU (if CUDA) and the Python/torch/MONAI versions."""
    import monai

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores (torch threads {torch.get_num_threads()})"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return f"{text}; Python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}"


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on CPU), so that wall clocks see the GPU time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def lpips_unavailable() -> str | None:
    """``None`` when the local LPIPS-VGG weights load, else the reason (the weights module's error message)."""
    from medi2i.errors import Medi2iInputError
    from medi2i.synthesis.losses import paired_metric

    try:
        paired_metric("lpips", lpips_pretrained=True)
    except Medi2iInputError as error:
        return " ".join(str(error).split())
    return None
