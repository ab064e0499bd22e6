"""What `effzoo train` prints while it runs.

- One summary line at the start (model, params, MACs, resolution, data, device, epochs, batch).
- Plain progress lines where no progress bar can draw: when stdout is a log file, CI or nohup, a bar
  prints nothing until the end. One line per epoch, and one per ~10% of a long epoch.
- An estimate of the epoch and the run after the first few batches, when the run is long; a plain
  word when it will take more than an hour.
- Lightning's own notices (device lines, tips, model summary, ...) silenced unless `--verbose`.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ..data import usable_cores

PREFIX = "effzoo train:"
# Lightning's loggers: their INFO lines (device availability, tips, "Trainer.fit stopped") are not
# the user's business; warnings and errors still come through.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
# Lightning warnings that are expected in an effzoo run, not actionable by the user.
QUIET = (r".*smaller than the logging interval.*", r"Checkpoint directory .* exists and is not empty.*",
         r".*isinstance\(treespec, LeafSpec\).*",
         r"Found \d+ module\(s\) in eval mode at the start of training.*",  # --freeze keeps them there on purpose
         r"Your `IterableDataset` has `__len__` defined.*")  # a shard stream gives each worker its own block: exact
ESTIMATE_BATCHES = 5  # batches timed (after the first, which pays for start-up) before estimating
ESTIMATE_SECONDS = 10.0  # ... or this long, whichever comes first
ESTIMATE_ABOVE_S = 180.0  # runs shorter than this need no estimate
HOUR_S = 3600.0
LONG_EPOCH_S = 60.0  # epochs at least this long also print a line every ~10%
# A validation batch runs the forward pass only: about a third of a training step's forward + backward.
EVAL_COST = 1 / 3


def announce(message: str) -> None:
    """One line of news from a run on stdout (a function, not a lambda: DDP spawn pickles callbacks holding it)."""
    print(f"{PREFIX} {message}", flush=True)


def interactive() -> bool:
    """True when a progress bar can draw: both streams are terminals (Rich draws on stdout, tqdm on stderr)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def duration(seconds: float) -> str:
    """`4.2 s`, `42 s`, `3 min 20 s`, `12 min`, `7 h 40 min`."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 3600:
        return f"{round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if m else f"{h} h"


def count(n: float) -> str:
    """`400 K`, `5.3 M`, `1.2 G`: params and MACs at a glance."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


@contextmanager
def quiet_lightning(verbose: bool = False) -> Iterator[None]:
    """Silence Lightning's notices for the duration; restore logger levels and warning filters after
    (one process may run many trainings: tests, `effzoo search`)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [log.level for log in loggers]
    with warnings.catch_warnings():
        for pattern in QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        for log in loggers:
            log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for log, level in zip(loggers, levels):
                log.setLevel(level)


def machine(trainer: pl.Trainer) -> str:
    """`2 CPU cores` or `8 GPUs (NVIDIA H200)`: what the estimate was measured on."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        n = trainer.num_devices * trainer.num_nodes
        return f"{n} GPU{'s' if n > 1 else ''} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        cores = usable_cores()
        return f"{cores} CPU core{'s' if cores > 1 else ''}"
    return device.type


def data_sizes(datamodule: Any) -> str:
    """`data synthetic: 102 train / 26 val`; empty when the data module cannot say."""
    try:
        sizes = datamodule.split_sizes()
    except (AttributeError, ValueError):
        return ""
    name = getattr(datamodule, "name", "")
    return f"data {name}: " + " / ".join(f"{n} {split}" for split, n in sizes.items())


def batch_size(batch: Any) -> int:
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(x.shape[0]) if hasattr(x, "shape") else 0


class TrainProgress(Callback):
    """The run's summary, estimates and (where `lines`) plain progress lines, printed on global rank 0.

    It also silences Lightning's notices in every process it runs in (unless `verbose`): `ddp_spawn`
    workers are fresh interpreters that do not inherit the parent's logger levels or warning filters.
    """

    def __init__(self, summary: str = "", batch_size: int | None = None, lines: bool = True, verbose: bool = False,
                 long_epoch_s: float | None = None) -> None:
        self.summary, self.batch_size, self.lines = summary, batch_size, lines
        self.verbose, self.long_epoch_s = verbose, long_epoch_s
        self._quiet: ExitStack | None = None
        self._estimated = False
        self._epoch_times: list[float] = []

    # -- quiet Lightning in this process -----------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.verbose and self._quiet is None:
            self._quiet = ExitStack()
            self._quiet.enter_context(quiet_lightning())

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._quiet is not None:
            self._quiet.close()
            self._quiet = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_quiet": None}  # ddp_spawn pickles callbacks; each process quiets itself

    # -- printing ----------------------------------------------------------------------------------
    def say(self, trainer: pl.Trainer, text: str) -> None:
        if trainer.is_global_zero:
            announce(text)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.summary:
            return
        run = f"{trainer.max_epochs} epochs"
        if self.batch_size:
            run += f", batch {self.batch_size}" + (" per device" if trainer.world_size > 1 else "")
        parts = [self.summary, data_sizes(trainer.datamodule), machine(trainer), run]
        self.say(trainer, "; ".join(p for p in parts if p))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_epoch = trainer.current_epoch  # > 0 when resumed
        self._epoch_times = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._first_batch_end: float | None = None
        self._images, self._steps = 0, 0
        self._loss_sum: torch.Tensor | float = 0.0  # a tensor sum: no device sync per step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._last = time.monotonic()
        self._images += batch_size(batch)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss_sum = self._loss_sum + loss.detach().float()
            self._steps += 1
        i, n = batch_idx + 1, trainer.num_training_batches
        if self._first_batch_end is None:
            self._first_batch_end = self._last
        if not self._estimated and trainer.current_epoch == self._first_epoch and self._ready(i, n):
            self._estimated = True
            self._estimate(trainer, i, n)
        if self.lines and math.isfinite(n) and i < n and i % math.ceil(n / 10) == 0:
            self._step_line(trainer, i, n)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.monotonic()
        self._epoch_times.append(now - self._start)
        # into metrics.csv beside the epoch's val top-1: time-to-accuracy curves (benchmarks/fashion_mnist.py)
        pl_module.log("epoch_seconds", now - self._start, on_step=False, on_epoch=True, rank_zero_only=True)
        if self.lines:
            self._epoch_line(trainer, now)

    # -- the lines ---------------------------------------------------------------------------------
    def _ready(self, i: int, n: float) -> bool:
        return i > ESTIMATE_BATCHES or i >= n or self._last - self._start >= ESTIMATE_SECONDS

    def _per_batch(self, i: int) -> float:
        if i >= 2 and self._first_batch_end is not None:  # the first batch pays for loader start-up
            return (self._last - self._first_batch_end) / (i - 1)
        return self._last - self._start

    def _estimate(self, trainer: pl.Trainer, i: int, n: float) -> None:
        if not math.isfinite(n) or trainer.max_epochs is None or trainer.max_epochs < 0:
            return
        val = trainer.num_val_batches
        n_val = sum(val) if isinstance(val, list) else val
        per_batch = self._per_batch(i)
        epoch_s = per_batch * (n + EVAL_COST * (n_val if math.isfinite(n_val) else 0))
        epochs = trainer.max_epochs - trainer.current_epoch
        run_s = epoch_s * epochs
        where = machine(trainer)
        if run_s > HOUR_S:
            gpu = "" if trainer.strategy.root_device.type == "cuda" else " / a GPU (--accelerator gpu)"
            self.say(trainer, f"this run will take about {duration(run_s)} on this machine ({where}, "
                              f"{duration(epoch_s)} an epoch x {epochs} epochs); see --epochs / --phi{gpu}")
        elif run_s > ESTIMATE_ABOVE_S:
            self.say(trainer, f"estimate: about {duration(epoch_s)} an epoch, {duration(run_s)} for "
                              f"{epochs} epochs ({where})")

    def _loss(self) -> str:
        return f"{float(self._loss_sum) / self._steps:.4f}" if self._steps else "-"

    def _rate(self, trainer: pl.Trainer) -> str:
        seconds = self._last - self._start
        return f"{self._images * trainer.world_size / seconds:.0f} images/s" if seconds > 0 else "- images/s"

    def _epoch_name(self, trainer: pl.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def _step_line(self, trainer: pl.Trainer, i: int, n: float) -> None:
        per_batch = (self._last - self._start) / i
        if per_batch * n < (LONG_EPOCH_S if self.long_epoch_s is None else self.long_epoch_s):
            return
        self.say(trainer, f"{self._epoch_name(trainer)} step {i}/{n}: {self._rate(trainer)}, "
                          f"epoch ETA {duration(per_batch * (n - i))}, train loss {self._loss()}")

    def _epoch_line(self, trainer: pl.Trainer, now: float) -> None:
        m = trainer.callback_metrics
        val_loss = f"{float(m['val_loss']):.4f}" if "val_loss" in m else "-"
        val_top1 = f"{100 * float(m['val_top1']):.2f}%" if "val_top1" in m else "-"
        left = (trainer.max_epochs or 0) - trainer.current_epoch - 1
        eta = f", ETA {duration(sum(self._epoch_times) / len(self._epoch_times) * left)}" if left > 0 else ""
        self.say(trainer, f"{self._epoch_name(trainer)}: train loss {self._loss()}, val loss {val_loss}, "
                          f"val top-1 {val_top1}, {duration(now - self._start)}, {self._rate(trainer)}{eta}")
