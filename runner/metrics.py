"""What a step measures besides the loss: the device's utilization, memory and energy.

``DeviceMeter`` reads NVML on a GPU and the process on a CPU. The namespaced names the trackers
get for each step field (``loss/policy``, ``perf/tokens_per_s``, ...) are ``runner.events.STEP_METRICS``,
next to the sinks that use them.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import psutil
import pynvml
import torch

GIB = 1024 ** 3


class Meter(Protocol):
    """A rank's device readings; each is None where it cannot be taken."""

    source: str  # "gpu" or "cpu": what utilization measures

    def utilization(self) -> float | None: ...

    def memory_gib(self) -> float | None: ...

    def energy_j(self) -> float | None: ...


class DeviceMeter:
    """Utilization, memory and energy of this rank: NVML on a GPU, the process on a CPU.

    Never raises: a reading it cannot take is None.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.source = "gpu" if device.type == "cuda" else "cpu"
        self._handle: Any = None
        self._energy_mj: float | None = None
        self._proc: psutil.Process | None = None
        try:
            self._proc = psutil.Process()
            self._proc.cpu_percent(None)  # starts the interval
        except Exception:
            self._proc = None
        if self.source == "gpu":
            try:
                pynvml.nvmlInit()
                index = device.index if device.index is not None else torch.cuda.current_device()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._energy_mj = float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            except Exception:
                self._handle = None

    def utilization(self) -> float | None:
        try:
            if self._handle is not None:
                return float(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu) / 100.0
            if self._proc is not None:
                # busy share of the cores this rank computes on (its torch threads; a Ray CPU
                # worker gets one), not of the whole machine that other ranks share
                cores = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
                return min(max(self._proc.cpu_percent(None) / 100.0 / cores, 0.0), 1.0)
        except Exception:
            pass
        return None

    def memory_gib(self) -> float | None:
        try:
            if self.device.type == "cuda":
                return torch.cuda.max_memory_reserved(self.device) / GIB
            if self._proc is not None:
                return float(self._proc.memory_info().rss) / GIB
        except Exception:
            pass
        return None

    def energy_j(self) -> float | None:
        """Joules since the last call (NVML's energy counter), None where it cannot be read."""
        if self._handle is None or self._energy_mj is None:
            return None
        try:
            now = float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:
            return None
        used, self._energy_mj = (now - self._energy_mj) / 1000.0, now
        return max(used, 0.0)
