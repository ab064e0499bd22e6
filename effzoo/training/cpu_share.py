"""Size torch's CPU threads to the cores a run actually gets, while it runs.

torch starts one intra-op thread per core and its OpenMP threads spin while they wait. Two such runs on
the same 2 cores each get ~14% of their solo speed (measured: 7-8 images/s against ~55 alone for the
README's main job), far below a fair half. Sleeping instead of spinning (`OMP_WAIT_POLICY=PASSIVE`)
made a run alone 1.8x slower (85.6 s against 48.5 s for 2 epochs). So instead this callback measures,
every few seconds, how much CPU *other* processes use (the machine's busy time from /proc/stat minus
this process's own CPU time) and gives torch the cores left over, at least one. This run's own loader
workers count among the others by what they really use (live worker processes are not in this
process's CPU time): measured on Fashion-MNIST, one worker used 0.1 of a core, and reserving it a
whole core (1 torch thread) made 120 steps take 74.8 s instead of 40.9 s. Alone, a run keeps every
core; when a second job arrives, both shrink to their share instead of fighting over it.

Only on a CPU training run, and only when the user has not fixed the thread count (`OMP_NUM_THREADS`).
Linux only (/proc); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ..data import usable_cores

PROC_STAT = Path("/proc/stat")


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (every state of the `cpu` line but idle/iowait)."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in fields[1:]]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def threads_for(cores: int, other_cores: float) -> int:
    """Cores left to this run by what other processes (its loader workers among them) use; at least one."""
    return max(1, min(cores, round(cores - other_cores)))


class CpuShare(pl.Callback):
    """Re-sizes `torch.set_num_threads` every `every_s` seconds of training (see the module docstring)."""

    def __init__(self, every_s: float = 5.0, log: Any = None) -> None:
        self.every_s, self.report = every_s, log
        self.cores = usable_cores()
        self._last: tuple[float, float, float] | None = None

    @staticmethod
    def applies(trainer: pl.Trainer) -> bool:
        on_cpu = isinstance(trainer.accelerator, pl.accelerators.CPUAccelerator)
        return on_cpu and "OMP_NUM_THREADS" not in os.environ and PROC_STAT.is_file()

    def _sample(self) -> tuple[float, float, float] | None:
        busy = _machine_busy_seconds()
        return None if busy is None else (time.monotonic(), busy, _own_seconds())

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._initial = torch.get_num_threads()
        self._last = self._sample() if self.applies(trainer) else None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The thread count is process-wide: later work in this process (the test pass, another run) starts afresh.
        if self._last is not None:
            torch.set_num_threads(self._initial)
            self._last = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._last is None or time.monotonic() - self._last[0] < self.every_s:
            return
        now = self._sample()
        if now is None:
            return
        wall = now[0] - self._last[0]
        others = max(0.0, ((now[1] - self._last[1]) - (now[2] - self._last[2])) / wall)
        self._last = now
        threads = threads_for(self.cores, others)  # sibling DDP processes and loader workers count as others
        if threads != torch.get_num_threads():
            if self.report is not None and trainer.is_global_zero:
                self.report(f"other processes use {others:.1f} of {self.cores} cores: {threads} torch thread(s)")
            torch.set_num_threads(threads)
