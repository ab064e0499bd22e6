"""Progressive learning (EfficientNetV2, Tan & Le 2021, Algorithm 1): small images and weak regularization
first, the full train size and the configured regularization last.

Training is cut into M stages of equal length; in stage i (0-based) the train image size and each
regularization value sit at i / (M - 1) of the way from their minimum to the configured value. Validation
and test stay at the eval size all along, and the last stage trains at the model's own train size, so the
exported model, FixRes and `test_input_size` see a run that ended as a plain one would.

The stage is a pure function of the epoch (`ProgressiveSchedule.at`). The callback applies it at every epoch's
start: Lightning creates that epoch's loader workers after `on_train_epoch_start`, so they copy the rebuilt
transform (training workers are not persistent: see ClassificationDataModule._loader). The first pass of a run
is the exception (created before that hook), so it is prepared in `setup` for the epoch it will serve,
counted in the callback's checkpointed state (the resume rule in run.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import pytorch_lightning as pl
from torch import nn

from ..models.layers import DropPath
from ..wording import setting
from .config import TrainConfig

# V2's Table 6 starts RandAugment at magnitude 5 and mixup at 0 for every size of model; dropout starts at
# 0.1 of the final 0.3 (S), i.e. a third. Stochastic depth is not ramped in the paper: here it starts at 0.
DEFAULT_MIN_MAGNITUDE = 5.0
DEFAULT_MIN_DROP_FRACTION = 1 / 3


@dataclass(frozen=True)
class Stage:
    """What one stage trains with. `rand_augment` is the timm spec with the stage's magnitude (or None)."""

    index: int
    first_epoch: int  # 0-based, inclusive
    last_epoch: int  # 0-based, inclusive
    image_size: int
    rand_augment: str | None
    mixup: float
    drop_rate: float
    drop_path_rate: float


@dataclass(frozen=True)
class ProgressiveSchedule:
    stages: int
    epochs: int
    min_size: int
    final_size: int
    rand_augment: str | None  # the configured (final) spec
    min_magnitude: float
    mixup: tuple[float, float]  # (min, final) of each ramped value
    drop_rate: tuple[float, float]
    drop_path_rate: tuple[float, float]

    def stage_index(self, epoch: int) -> int:
        """Epochs split into `stages` runs of (nearly) equal length, as V2 does (N / M epochs each)."""
        return min(self.stages - 1, max(0, epoch) * self.stages // self.epochs)

    def at(self, epoch: int) -> Stage:
        i = self.stage_index(epoch)
        t = i / (self.stages - 1)
        first = next(e for e in range(self.epochs) if self.stage_index(e) == i)
        last = max(e for e in range(self.epochs) if self.stage_index(e) == i)
        return Stage(
            index=i, first_epoch=first, last_epoch=last,
            image_size=int(round(self.min_size + (self.final_size - self.min_size) * t)),
            rand_augment=_with_magnitude(self.rand_augment, self.min_magnitude, t),
            mixup=_ramp(self.mixup, t), drop_rate=_ramp(self.drop_rate, t), drop_path_rate=_ramp(self.drop_path_rate, t),
        )

    def table(self) -> list[dict[str, Any]]:
        """One plain dict per stage: model.json's `progressive.stages`, the card's schedule."""
        firsts = sorted({self.at(e).first_epoch for e in range(self.epochs)})
        return [asdict(self.at(e)) for e in firsts]

    def to_dict(self) -> dict[str, Any]:
        return {"stages": self.stages, "epochs": self.epochs, "min_size": self.min_size,
                "final_size": self.final_size, "schedule": self.table()}


def _ramp(bounds: tuple[float, float], t: float) -> float:
    lo, hi = bounds
    return lo + (hi - lo) * t


_MAGNITUDE = re.compile(r"-m(\d+(?:\.\d+)?)")


def magnitude(spec: str | None) -> float | None:
    """The `mN` of a timm RandAugment spec ('rand-m9-mstd0.5' -> 9.0), None without one."""
    found = _MAGNITUDE.search(spec or "")
    return float(found.group(1)) if found else None


def _with_magnitude(spec: str | None, minimum: float, t: float) -> str | None:
    final = magnitude(spec)
    if final is None:
        return spec
    value = _ramp((min(minimum, final), final), t)
    return _MAGNITUDE.sub(f"-m{value:g}", spec, count=1)


def build_schedule(cfg: TrainConfig, final_size: int, total_stride: int, drop_rate: float,
                   drop_path_rate: float) -> ProgressiveSchedule | None:
    """The run's schedule (None when `--progressive` is off), checked against the model that was built:
    `final_size` is its train size, `drop_rate`/`drop_path_rate` the rates it was built with."""
    if not cfg.progressive:
        return None
    min_size = cfg.prog_min_size or max(final_size // 2, min(final_size, 2 * total_stride))
    if min_size > final_size:
        raise ValueError(f"{setting('prog_min_size', min_size)} is larger than the train size {final_size} px the "
                         f"progressive schedule ends at; use a smaller {setting('prog_min_size')} or a larger "
                         f"{setting('image_size')}")
    if min_size < total_stride:
        raise ValueError(f"{setting('prog_min_size', min_size)} is below the model's total stride {total_stride}: the "
                         f"first stage's last feature map would be empty; use {setting('prog_min_size', total_stride)} "
                         "or more")
    if cfg.eval_image_size is not None and cfg.eval_image_size < final_size:
        raise ValueError(
            f"{setting('progressive')} ends at the train size {final_size} px, but {setting('eval_image_size', cfg.eval_image_size)} "
            "tests below it: FixRes (and EfficientNetV2) test at or above the final train size, where the "
            f"apparent object size matches; drop {setting('eval_image_size')} or set it >= {final_size}")
    final_magnitude = magnitude(cfg.rand_augment) if cfg.rand_augment not in (None, "none") else None
    ramps = {"prog_min_magnitude": (cfg.prog_min_magnitude, final_magnitude), "prog_min_mixup": (cfg.prog_min_mixup, cfg.mixup),
             "prog_min_drop_rate": (cfg.prog_min_drop_rate, drop_rate),
             "prog_min_drop_path_rate": (cfg.prog_min_drop_path_rate, drop_path_rate)}
    for name, (lo, hi) in ramps.items():
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{setting(name, lo)} is above the configured value {hi:g} the schedule ends at: the ramp "
                             f"goes from the minimum up; lower {setting(name)}")
    default_min_drop = round(drop_rate * DEFAULT_MIN_DROP_FRACTION, 6)
    return ProgressiveSchedule(
        stages=cfg.progressive, epochs=cfg.epochs, min_size=min_size, final_size=final_size,
        rand_augment=None if final_magnitude is None else cfg.rand_augment,
        min_magnitude=DEFAULT_MIN_MAGNITUDE if cfg.prog_min_magnitude is None else cfg.prog_min_magnitude,
        mixup=(cfg.prog_min_mixup, cfg.mixup),
        drop_rate=(default_min_drop if cfg.prog_min_drop_rate is None else cfg.prog_min_drop_rate, drop_rate),
        drop_path_rate=(cfg.prog_min_drop_path_rate or 0.0, drop_path_rate),
    )


class ProgressiveLearning(pl.Callback):
    """Applies the schedule's stage at each training epoch's start: the data module rebuilds its train
    transform (size, RandAugment magnitude) and mixup alpha; the model's dropout and stochastic-depth
    rates are scaled from the rates it was built with (each block keeps its place in the depth ramp)."""

    def __init__(self, schedule: ProgressiveSchedule, announce: Any = None) -> None:
        self.schedule = schedule
        self.announce = announce
        self._built_rates: dict[nn.Module, float] | None = None
        self.current: Stage | None = None
        self.epochs_begun = 0  # in every checkpoint: the epoch a resumed run's first pass serves
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning builds the first training pass early (configure_optimizers asks for the step count, which sets
        # up the train loader: its workers copy the transform then, before any epoch hook), so the first pass's
        # stage is applied here, and again in load_state_dict when a resumed run's checkpoint says which epoch
        # that pass serves (the one after the checkpoint's).
        self._trainer, self._module = trainer, pl_module
        if stage == "fit":
            self._apply(trainer, pl_module, self.epochs_begun)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, pl_module, trainer.current_epoch)
        self.epochs_begun = trainer.current_epoch + 1

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        stage = self.schedule.at(epoch)
        if stage == self.current:
            return
        trainer.datamodule.set_train_stage(stage.image_size, stage.rand_augment, stage.mixup)
        self._scale_regularization(pl_module, stage)
        if self.announce is not None and trainer.is_global_zero:
            self.announce(f"progressive stage {stage.index + 1}/{self.schedule.stages} (epochs {stage.first_epoch + 1}-"
                     f"{stage.last_epoch + 1}): {stage.image_size} px, RandAugment {stage.rand_augment}, mixup "
                     f"{stage.mixup:.3g}, dropout {stage.drop_rate:.3g}, drop path {stage.drop_path_rate:.3g}")
        self.current = stage

    def _scale_regularization(self, pl_module: pl.LightningModule, stage: Stage) -> None:
        if self._built_rates is None:  # the rates as built are the final stage's; remember them once
            self._built_rates = {m: (m.p if isinstance(m, nn.Dropout) else m.drop_prob) for m in pl_module.modules()
                                 if isinstance(m, (nn.Dropout, DropPath))}
        final_drop, final_path = self.schedule.drop_rate[1], self.schedule.drop_path_rate[1]
        for module, built in self._built_rates.items():
            if isinstance(module, nn.Dropout):
                module.p = built * stage.drop_rate / final_drop if final_drop > 0 else built
            else:
                module.drop_prob = built * stage.drop_path_rate / final_path if final_path > 0 else built

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_dict(), "epochs_begun": self.epochs_begun}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs_begun = int(state_dict.get("epochs_begun", 0))
        if self._trainer is not None:
            self._apply(self._trainer, self._module, self.epochs_begun)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # DDP spawn pickles callbacks: not the trainer, nor the module's copy here
        state["_trainer"] = state["_module"] = None
        return state
