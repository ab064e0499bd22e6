"""`train(config) -> Path`: data, model, Trainer and callbacks from a `TrainConfig`; fit, test, export.

The output folder holds the Lightning checkpoints (best by val top-1, and `last.ckpt`), CSV logs,
the resolved `config.yaml`, and at the end the exported `model.safetensors` + `model.json`,
`metrics.json` and `model_card.md`.

The resume rule: a run killed at any moment (SIGKILL mid-epoch, mid-validation, mid-write) and continued
with `--resume` ends with the same weights and metrics as a run never interrupted (tests/test_fault_drill.py,
benchmarks/resume_drill.py). Checkpoints are written at the end of each epoch's validation, atomically
(`AtomicCheckpointIO`); a kill loses only the work since then, which the resumed run redoes identically,
because everything the rest of the run reads is either
  * in the checkpoint: weights, optimizer, LR schedule, EMA weights, callbacks' state (best score), loop
    counters (Lightning), and the torch / numpy / python RNG states (`module.save_checkpoint_extras`); or
  * drawn afresh from those RNG states: each epoch's shuffle and its loader workers' seeds, drawn when the
    epoch starts (training workers are not persistent: see `ClassificationDataModule._loader`).
Lightning runs its sanity check under `isolate_rng`, so the resumed run's extra validation draws nothing.
Whatever new keeps state across epochs (a progressive schedule, a stateful sampler) must go in a
callback's `state_dict` or be a pure function of (seed, epoch), and the drill must still pass.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from ..artifacts.atomic import atomic_write
from ..data import ClassificationDataModule, DataSource, create_source
from ..models import create_model, model_info
from ..models.init import zero_init_classifier
from ..mtl import WEIGHTINGS
from ..mtl.metrics import selection_metric
from ..scaling import CompoundScaling, round_resolution
from ..wording import setting
from .config import TrainConfig, resolve, save_yaml
from .cpu_share import CpuShare
from .finetune import prepare_model
from .module import CKPT_KEY, ClassificationModule
from .mtl_module import MultiTaskDataModule, MultiTaskModule
from .outputs import export_run
from .pretrained import build_pretrained
from .progressive import ProgressiveLearning, ProgressiveSchedule, build_schedule
from .progress import PREFIX, TrainProgress, announce, count, interactive, quiet_lightning

LAST = "last.ckpt"
# Upsampling beyond this factor over the data's own base resolution adds no detail, only cost.
MAX_UPSCALE = 4.0
# A final feature map under this many stride cells a side leaves the last stages nearly nothing to see.
MIN_FINAL_MAP = 2


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file in the target folder, fsync, then rename: a kill mid-write leaves the
    previous `last.ckpt` intact. (Lightning's own write goes through fsspec, whose temp file lives
    in the system temp dir; across filesystems its final move is a copy, not an atomic rename.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())

        try:
            atomic_write(path, write)
        except OSError as e:
            # A full disk (or a lost mount) mid-write: the temp file is gone and the previous checkpoint is
            # untouched, so say that, in one line, instead of a traceback from inside torch.save.
            reason = e.strerror or str(e)
            raise CheckpointWriteError(
                f"cannot write checkpoint {path}: {reason.lower()} (errno {e.errno}); the previous checkpoint is "
                f"intact: free space, then continue with {setting('resume', True)}") from None


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one is intact (see `AtomicCheckpointIO`)."""


def env_rank() -> int:
    """Global rank from the launcher's environment (torchrun, SLURM, Lightning's DDP); 0 when unset."""
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    node, local = os.environ.get("NODE_RANK", "0"), os.environ.get("LOCAL_RANK", "0")
    return 0 if node in ("", "0") and local in ("", "0") else 1


def default_output(cfg: TrainConfig) -> Path:
    data = Path(cfg.data).name or "data"
    phi = "" if cfg.phi is None else f"-phi{cfg.phi:g}"
    return Path("runs") / f"{data}-{cfg.model}{phi}"


def model_spec(cfg: TrainConfig, base_resolution: int, in_chans: int, num_classes: int) -> dict[str, Any]:
    """The registry arguments of the run's model. The data's base resolution goes in with them, so the
    builder computes the train resolution once (base x gamma^phi, or `--image-size`) and decides an
    automatic `small_input` from it."""
    args: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans, "small_input": cfg.small_input,
                            "base_resolution": base_resolution}
    for key in ("phi", "coefficients", "depth_multiplier", "width_multiplier", "drop_rate", "drop_path_rate"):
        if getattr(cfg, key) is not None:
            args[key] = getattr(cfg, key)
    if cfg.image_size:
        args["resolution"] = cfg.image_size
    return args


def check_upscale(cfg: TrainConfig, base_resolution: int) -> None:
    """Refuse a phi whose resolution only upsamples the data, before building a possibly huge model."""
    if cfg.phi is None or cfg.image_size:
        return
    res = round_resolution(base_resolution, CompoundScaling.from_tuple(cfg.coefficients).factors(cfg.phi).resolution)
    if res > MAX_UPSCALE * base_resolution:
        raise ValueError(
            f"phi too large for this data's resolution: {cfg.model} (phi={cfg.phi}) scales the data's base "
            f"resolution {base_resolution} px to {res} px, more than {MAX_UPSCALE:g}x the data's own resolution; "
            f"upsampling adds no detail but multiplies the cost. Use a smaller {setting('phi')}, or pass {setting('image_size')} explicitly")


def check_stride(cfg: TrainConfig, model: torch.nn.Module) -> int:
    """The model's train resolution, checked against its total stride (its last map must not be empty)."""
    res, stride = model.pretrained_cfg.input_size[-1], model.total_stride
    if res < stride:
        what = setting("image_size", res) if cfg.image_size else f"{cfg.model} (phi={cfg.phi}) trains at {res} px"
        raise ValueError(
            f"phi too small for this data's resolution: {what}, below the model's total stride {stride} "
            f"(its last feature map would be empty); use {setting('small_input', True)} (stride 8) or a larger {setting('phi')}")
    if res < MIN_FINAL_MAP * stride:
        warn_low_resolution(res, stride, small_input=bool(model.pretrained_cfg.small_input))
    return res


def warn(message: str) -> None:
    """One plain line on stderr (rank 0), not Python's `file:line: UserWarning` and echoed source line."""
    if env_rank() == 0:
        print(f"{PREFIX} warning: {message}", file=sys.stderr, flush=True)


def warn_low_resolution(res: int, stride: int, small_input: bool) -> None:
    """Training still works below 2x2 stride cells, but the last stages see almost only padding."""
    final = max(1, res // stride)
    fixes = [f"a larger {setting('phi')}", f"{setting('image_size', MIN_FINAL_MAP * stride)} or more"]
    if not small_input:
        fixes.append(f"{setting('small_input', True)} (stride 8)")
    warn(f"training at {res} px with total stride {stride} leaves a {final}x{final} final feature map "
         f"(under {MIN_FINAL_MAP}x{MIN_FINAL_MAP}): the network cannot use its later stages; use "
         + ", ".join(fixes[:-1]) + f" or {fixes[-1]}")


def prepare_output(cfg: TrainConfig) -> Path:
    output = Path(cfg.output) if cfg.output else default_output(cfg)
    last = output / LAST
    if cfg.resume and not last.is_file():
        raise FileNotFoundError(f"{setting('resume', True)}: no checkpoint {last} to continue from "
                                f"(is {setting('output')} right?)")
    if not cfg.resume and last.is_file() and env_rank() == 0:
        raise ValueError(f"{output} already holds a run ({LAST}); use {setting('resume', True)} or another {setting('output')}")
    if cfg.resume and env_rank() == 0:
        # the temp files of writes a kill interrupted (atomic_write's names); the files they were for are intact
        for stale in output.glob(".*.ckpt.*.tmp"):
            stale.unlink(missing_ok=True)
    return output


def _world_size(cfg: TrainConfig, on_gpu: bool) -> int:
    d = cfg.devices
    if isinstance(d, list):
        n = len(d)
    elif isinstance(d, int) and d >= 0:
        n = d
    elif isinstance(d, str) and "," in d:
        n = len([x for x in d.split(",") if x.strip()])
    else:  # "auto" or -1: every visible device
        n = torch.cuda.device_count() if on_gpu else 1
    return max(1, n) * cfg.num_nodes


def ema_avg_with_warmup(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """An `AveragedModel` avg_fn: EMA whose decay after n updates is min(decay, (1 + n) / (10 + n))."""
    def average(ema: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay).to(current.dtype) \
            if current.is_floating_point() else decay
        return ema + (current - ema) * (1.0 - d)
    return average


def build_trainer(cfg: TrainConfig, output: Path, summary: str = "",
                  schedule: ProgressiveSchedule | None = None) -> pl.Trainer:
    """The run's Trainer. In a terminal it draws Lightning's progress bar; anywhere else (a log file,
    CI, nohup) plain progress lines instead. `summary` is the run's one-line description (`run_summary`);
    `schedule` the progressive-learning stages (`progressive_schedule`), if any."""
    bar = cfg.progress_bar and interactive()
    monitor, mode = selection_metric(cfg.tasks)
    callbacks: list[pl.Callback] = [
        # first: its setup quiets Lightning before the other callbacks' setup notices
        TrainProgress(summary, cfg.batch_size, lines=not bar, verbose=cfg.verbose),  # lines wherever no bar is drawn
        # val_top1 (max), unless the main task is a regression / multi-label head: its own metric (mtl-report baselines)
        ModelCheckpoint(dirpath=output, filename=f"best-epoch{{epoch:03d}}-{monitor.removeprefix('val_')}_{{{monitor}:.4f}}",
                        monitor=monitor, mode=mode, save_top_k=1, auto_insert_metric_name=False),
        # `last.ckpt` from its own callback: Lightning 2.6's save_last=True writes "last" only in an epoch that
        # also saved a top-k checkpoint, so after an epoch that did not improve val_top1, last.ckpt (what
        # --resume continues from) stayed at the best epoch. Without a monitor this one saves every epoch.
        ModelCheckpoint(dirpath=output, filename=LAST.removesuffix(".ckpt"), save_top_k=1, every_n_epochs=1,
                        enable_version_counter=False),
        LearningRateMonitor(logging_interval="step"),
        CpuShare(log=announce),
    ]
    if cfg.ema_decay > 0:
        ema = EMAWeightAveraging(decay=cfg.ema_decay)
        # Lightning's EMA uses the full decay from step one, so for the first ~1/(1-decay) steps its weights
        # are mostly the random init (measured: 10% val top-1 after one Fashion-MNIST epoch at 0.999).
        # timm's ModelEma warm-up ramps the decay as (1+n)/(10+n) up to the target instead.
        ema._kwargs["avg_fn"] = ema_avg_with_warmup(cfg.ema_decay)
        callbacks.append(ema)
    if schedule is not None:
        callbacks.append(ProgressiveLearning(schedule, announce=announce))
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    # torch refuses SyncBatchNorm on CPU tensors; on GPUs with DDP it keeps BN statistics global.
    sync_bn = on_gpu and _world_size(cfg, on_gpu) > 1
    # Passed only when set: at 1.0 Lightning announces that 100% of the batches will be used. (An int 1 is
    # one batch, not all of them, and 1 == 1.0 in Python: hence the type test.)
    limits = {k: v for k in ("limit_train_batches", "limit_val_batches")
              if not (isinstance(v := getattr(cfg, k), float) and v == 1.0)}
    return pl.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=cfg.precision, sync_batchnorm=sync_bn, deterministic=cfg.deterministic,
        logger=CSVLogger(output, name="logs"), callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        default_root_dir=output, enable_progress_bar=bar, log_every_n_steps=10, **limits,
        # Lightning's summary counts FLOPs as 0 for this model; effzoo prints its own (run_summary)
        enable_model_summary=cfg.verbose,
    )


def run_summary(cfg: TrainConfig, module: pl.LightningModule, dm: pl.LightningDataModule) -> str:
    """`mobilenetv2_035: 400 K params, 1.2 M MACs at 16 px`: true counts (one forward pass), where
    Lightning's model summary showed FLOPs of 0. The progress callback adds data, device and epochs."""
    res = dm.image_size
    info = model_info(module.model, (dm.in_chans, res, res))
    pcfg = module.model.pretrained_cfg  # the model built: with --pretrained, the weights' architecture
    phi = (pcfg.model_args or {}).get("phi")
    name = pcfg.model_name if phi is None else f"{pcfg.model_name} phi={phi:g}"
    return f"{name}: {count(info['params'])} params, {count(info['macs'])} MACs at {res} px"


def data_source(cfg: TrainConfig) -> DataSource:
    """The config's dataset, opened as every run opens it."""
    return create_source(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction,
                         on_bad_image=cfg.on_bad_image, **cfg.data_options)


def build(cfg: TrainConfig) -> tuple[TrainConfig, pl.LightningDataModule, pl.LightningModule]:
    """The data module and LightningModule of a config, and the config with `small_input` resolved when
    it was left to auto (None). The model is built once, here, from the data's channels, classes and
    base resolution; the data module then takes its resolution from the model."""
    source = data_source(cfg)
    check_upscale(cfg, source.base_resolution)
    if cfg.tasks is not None:
        check_weighting_fits_devices(cfg)
    elif source.num_classes == 0:  # a folder labelled only by its labels.csv has no classes to train on alone
        train = source.label_tables["train"]
        raise ValueError(f"{cfg.data} has no class subfolders, only labels.csv columns "
                         f"({', '.join(train.columns)}): train it with {setting('tasks')} naming them, "
                         "e.g. NAME:cls:CLASSES:1:COLUMN")
    spec = model_spec(cfg, source.base_resolution, source.in_chans, source.num_classes)
    if cfg.pretrained:  # the weights' architecture; only a new classifier is zeroed (a loaded one is kept)
        resume_from = (Path(cfg.output) if cfg.output else default_output(cfg)) / LAST if cfg.resume else None
        model = build_pretrained(cfg, source, spec, resume_from=resume_from)  # resumed: as its checkpoint records
    else:
        model = create_model(cfg.model, **spec)
        if cfg.head_init == "zero":
            zero_init_classifier(model)
    prepare_model(model, cfg)  # --freeze, --grad-checkpointing
    res = check_stride(cfg, model)
    cfg = cfg.replace(small_input=bool(model.pretrained_cfg.small_input))
    dm_class, extra = ClassificationDataModule, {}
    if cfg.tasks is not None:
        dm_class, extra = MultiTaskDataModule, {"tasks": cfg.tasks, "main_label_limit": cfg.main_label_limit}
    dm = dm_class(
        source, **extra, batch_size=cfg.batch_size, image_size=res, eval_image_size=cfg.eval_image_size,
        crop_pct=cfg.crop_pct, interpolation=cfg.interpolation, num_workers=cfg.num_workers, seed=cfg.seed,
        rand_augment=cfg.rand_augment, random_erasing=cfg.random_erasing, mixup=cfg.mixup, cutmix=cfg.cutmix,
        label_smoothing=cfg.label_smoothing, train_limit=cfg.train_limit, scale=cfg.scale)
    data_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dm.data_config.items()}
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in ("resume",)}
    if cfg.tasks is not None:
        module: pl.LightningModule = MultiTaskModule(
            model, dm.tasks, recipe, data_config, channels_last=cfg.channels_last, compile=cfg.compile,
            weighting=cfg.weighting, weighting_options=dict(cfg.weighting_options), head_reg=cfg.head_reg,
            head_reg_strength=cfg.head_reg_strength, feature_norm=cfg.feature_norm)
    else:
        module = ClassificationModule(model, recipe, data_config, channels_last=cfg.channels_last, compile=cfg.compile)
    if model.pretrained_cfg.parent:  # in every checkpoint: --resume rebuilds from it, the source may be gone
        module.hparams["parent"] = dict(model.pretrained_cfg.parent)
    return cfg, dm, module


def progressive_schedule(cfg: TrainConfig, module: pl.LightningModule, dm: pl.LightningDataModule) -> ProgressiveSchedule | None:
    """The run's progressive-learning schedule (None when off), ending at the built model's train size and rates."""
    model = module.model.backbone if hasattr(module.model, "backbone") else module.model
    return build_schedule(cfg, final_size=dm.image_size, total_stride=model.total_stride,
                          drop_rate=model.drop_rate, drop_path_rate=getattr(model, "drop_path_rate", 0.0))


def check_weighting_fits_devices(cfg: TrainConfig) -> None:
    """A gradient-level weighting (PCGrad) writes gradients itself, bypassing DDP's all-reduce."""
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    distributed = "ddp" in str(cfg.strategy) or _world_size(cfg, on_gpu) > 1  # DDP wraps even one process
    if WEIGHTINGS[cfg.weighting].gradient_level and distributed:
        raise ValueError(f"weighting {cfg.weighting} edits gradients itself, bypassing DDP's gradient all-reduce: "
                         "train it on one device, or pick a loss-level weighting (fixed, uncertainty, dwa, gradnorm)")


@dataclass
class TrainResult:
    output: Path
    module: ClassificationModule  # holding the exported (selected) weights
    trainer: pl.Trainer
    datamodule: pl.LightningDataModule
    metrics: dict[str, Any]


def train(config: TrainConfig | Mapping[str, Any]) -> Path:
    """Train as configured; returns the output folder (exported model, checkpoints, logs, card)."""
    return run_training(config).output


def run_training(config: TrainConfig | Mapping[str, Any]) -> TrainResult:
    """`train`, returning the trained module, Trainer and data module too (for tests and notebooks)."""
    cfg = config if isinstance(config, TrainConfig) else resolve(config)
    output = prepare_output(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    cfg, dm, module = build(cfg)
    schedule = progressive_schedule(cfg, module, dm)  # before anything is written: its errors are the config's
    if env_rank() == 0:
        save_yaml(cfg, output / "config.yaml")
    summary = run_summary(cfg, module, dm) if env_rank() == 0 else ""
    # Scoped: one process may run many trainings (tests, `effzoo search`); Trainer() itself prints notices.
    with quiet_lightning(cfg.verbose):
        trainer = build_trainer(cfg, output, summary, schedule)
        started = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=str(output / LAST) if cfg.resume else None, weights_only=True)
        fit_seconds = time.perf_counter() - started

        # Export the checkpoint selected on validation (EMA weights when EMA is on: what validation measured).
        best = trainer.checkpoint_callback.best_model_path or str(output / LAST)
        ckpt = torch.load(best, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        extra = ckpt.get(CKPT_KEY, {})
        keep = ("val_top1", "val_top5", "val_loss")
        metrics: dict[str, Any] = {k: v for k, v in extra.get("val_metrics", {}).items()
                                   if k in keep or (cfg.tasks is not None and not k.endswith("_step"))}
        metrics.update(train_seconds=round(fit_seconds, 1), best_epoch=extra.get("epoch"), best_checkpoint=Path(best).name,
                       global_step=trainer.global_step, epochs_run=trainer.current_epoch)
        if cfg.test and dm.has_test:
            results = trainer.test(module, datamodule=dm, verbose=False)
            metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    if trainer.is_global_zero:
        export_run(output, module, cfg, dm, metrics, schedule.to_dict() if schedule else None)
    return TrainResult(output, module, trainer, dm, metrics)
