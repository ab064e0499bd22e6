"""Evaluate a classifier on a split, at one or several test resolutions.

Every number comes from one pass that collects logits; metrics are computed from them:
top-1/top-5, loss, per-class accuracy, confusion matrix, expected calibration error (ECE, 15
equal-width confidence bins, Guo et al. 2017) and images/s of the forward pass.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..artifacts.weights import MODEL_WEIGHTS, metadata_path
from ..data import create_datamodule
from ..models import model_info
from ..wording import setting
from .progress import progress as report_progress
from .progress import resolve_label


def parse_resolutions(text: str | Sequence[int], min_size: int = 1) -> list[int]:
    """Parse "224,256,288" (or a list) into sorted unique ints, each at least `min_size` (the net's stride)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ValueError(f"could not parse resolutions {text!r}: expected comma-separated integers like 224,256,288") from None
    if not values:
        raise ValueError(f"no resolution given in {text!r}: expected comma-separated integers like 224,256,288")
    too_small = [v for v in values if v < min_size]
    if too_small:
        raise ValueError(
            f"test resolution(s) {too_small} are smaller than the network's total stride {min_size}: the feature map "
            f"would be empty. Use resolutions >= {min_size}."
        )
    return sorted(set(values))


def resolve_device(device: str) -> torch.device:
    """"auto" (a CUDA GPU when one is visible, else the CPU), "cpu", "cuda" or "cuda:N", checked before any work."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU here: use {setting('device', 'cpu')}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return dev


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, channels_last: bool = True,
            progress: str | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Logits and targets over a loader, and the seconds spent in the forward passes.

    `progress` labels a progress report on stderr (see `progress.py`); None stays quiet unless the
    caller runs inside `progress.reporting(...)`.
    """
    model.eval()
    device = next(model.parameters()).device
    logits, targets, seconds = [], [], 0.0
    batches = report_progress(loader, _length(loader), resolve_label(progress), count=lambda batch: len(batch[1]))
    for x, y in batches:
        x = x.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        start = time.perf_counter()
        logits.append(model(x).float().cpu())
        seconds += time.perf_counter() - start
        targets.append(y.cpu())
    return torch.cat(logits), torch.cat(targets), seconds


def _length(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:  # an iterable dataset without a length
        return None


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    conf, pred = probs.max(1)
    correct = pred.eq(targets).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (conf[in_bin].mean() - correct[in_bin].mean()).abs()
    return float(ece)


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy (top-1, top-k with k = min(5, classes)), loss, per-class accuracy, confusion matrix, ECE."""
    if len(targets) == 0:
        raise ValueError("cannot compute metrics on an empty split")
    k = min(5, num_classes)
    topk = logits.topk(k, dim=1).indices
    pred = topk[:, 0]
    confusion = torch.bincount(targets * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    support = confusion.sum(1)
    per_class = (confusion.diag().float() / support.clamp(min=1).float()).tolist()
    return {
        "top1": 100.0 * pred.eq(targets).float().mean().item(),
        f"top{k}" if k != 5 else "top5": 100.0 * topk.eq(targets[:, None]).any(1).float().mean().item(),
        "loss": F.cross_entropy(logits, targets).item(),
        "ece": expected_calibration_error(logits.softmax(1), targets),
        "per_class_top1": [100.0 * a for a in per_class],
        "confusion_matrix": confusion.tolist(),
        "num_samples": int(len(targets)),
    }


def evaluate_loader(model: nn.Module, loader: DataLoader, num_classes: int, channels_last: bool = True,
                    progress: str | None = None) -> dict[str, Any]:
    """Metrics of `model` on `loader`; `progress` labels a progress report on stderr (None: quiet)."""
    logits, targets, seconds = predict(model, loader, channels_last, progress)
    metrics = classification_metrics(logits, targets, num_classes)
    metrics["images_per_s"] = len(targets) / seconds if seconds > 0 else float("nan")
    return metrics


def resolution_sweep(model: nn.Module, datamodule: Any, resolutions: Sequence[int], split: str = "val",
                     crop_pct: float | None = None, with_macs: bool = False,
                     progress: str | None = None) -> list[dict[str, Any]]:
    """Evaluate `model` on `split` at each test resolution with the test-time preprocessing (resize by crop_pct, center crop).

    `progress` is the label of a progress report per resolution ("evaluate" -> "evaluate 32px: ..."); None
    stays quiet unless the caller runs inside `progress.reporting(...)`.
    """
    stride = getattr(model, "total_stride", 1)
    rows = []
    for res in parse_resolutions(resolutions, stride):
        row = {"resolution": res, "split": split}
        label = resolve_label(None if progress is None else f"{progress} {res}px", f"{res}px")
        loader = datamodule.eval_dataloader(split, res, crop_pct)
        row.update(evaluate_loader(model, loader, datamodule.num_classes, progress=label))
        if with_macs:
            row["macs"] = model_info(model, (datamodule.in_chans, res, res))["macs"]
        rows.append(row)
    return rows


def best_resolution(rows: Sequence[dict[str, Any]], metric: str = "top1") -> int:
    """The resolution with the highest `metric`; ties go to the smaller (cheaper) resolution."""
    return max(rows, key=lambda r: (r[metric], -r["resolution"]))["resolution"]


def datamodule_for(model: nn.Module, data: str, *, data_dir: str | None = None, batch_size: int = 128,
                   num_workers: int | None = None, seed: int = 0, val_fraction: float | None = None,
                   check_shape: bool = True, **source_options: Any) -> Any:
    """The data module for evaluating `model`, with the preprocessing the model was trained with.

    The model's stored normalization and crop win over the data's own defaults: a model must be
    evaluated with the statistics it saw in training. `val_fraction` and `source_options` (synthetic:
    num_classes, size, num_samples, ...) rebuild the splits of the run being evaluated. Data with
    other channels or another class count is refused (`check_data_matches(..., names=False)`) unless
    `check_shape=False`, for callers that run the full check themselves.
    """
    cfg = getattr(model, "pretrained_cfg", {})
    require_preprocessing(cfg)
    dm = create_datamodule(data, data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed,
                           crop_pct=cfg["crop_pct"], interpolation=cfg["interpolation"], rand_augment=None,
                           val_fraction=val_fraction, **source_options)
    if check_shape:
        check_data_matches(model, dm, names=False, label=f"the data {data}")
    dm.mean, dm.std = tuple(cfg["mean"]), tuple(cfg["std"])
    return dm


def require_preprocessing(cfg: dict) -> None:
    """A trained checkpoint must say how its inputs were prepared; name what is missing."""
    missing = [k for k in ("input_size", "test_input_size", "crop_pct", "interpolation", "mean", "std", "class_names")
               if k not in cfg]
    if missing:
        raise ValueError(
            f"the checkpoint has no preprocessing metadata for {', '.join(missing)} (pretrained_cfg); it was not "
            f"written by `effzoo train`. Keep its model.json beside the weights, or re-export it with effzoo."
        )


class DataMismatchError(ValueError):
    """The data does not match the model. `overridable`: only the class names differ, so the numbers can
    still be computed (a caller may let the user go on); channels or class counts never can be."""

    def __init__(self, message: str, overridable: bool) -> None:
        super().__init__(message)
        self.overridable = overridable


def check_data_matches(model: nn.Module, datamodule: Any, *, names: bool = True, allow_mismatch: bool = False,
                       label: str | None = None) -> str | None:
    """Refuse data the model was not trained for, naming both sides.

    Channels and class counts must be equal (else the forward pass or the metrics cannot run). With
    `names`, class names must also be equal when both sides have them: same-sized datasets (digits,
    Fashion-MNIST) would otherwise give a meaningless accuracy without any error. `allow_mismatch`
    turns that last difference into the returned note; None means the data matches.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    model_names = list(cfg.get("class_names") or [])
    data_names = list(getattr(datamodule, "class_names", None) or [])
    shape = _shape_differences(model, datamodule)
    names_differ = names and not shape and bool(model_names and data_names) and model_names != data_names
    if not shape and not names_differ:
        return None
    trained_on = cfg.get("dataset") or "unrecorded data"
    message = (f"the model was trained on {trained_on} ({_describe(model.num_classes, model_names, model.in_chans)}) "
               f"but {label or f'the data {datamodule.name}'} has "
               f"{_describe(datamodule.num_classes, data_names, datamodule.in_chans)}: ")
    if shape:
        raise DataMismatchError(message + "; ".join(shape) + ", so it cannot be evaluated on this data", False)
    if not allow_mismatch:
        raise DataMismatchError(message + "class names differ", True)
    return message + "class names differ (evaluated anyway)"


def _shape_differences(model: nn.Module, datamodule: Any) -> list[str]:
    found = []
    if datamodule.num_classes != model.num_classes:
        found.append(f"{_plural(model.num_classes, 'class')} vs {datamodule.num_classes}")
    if datamodule.in_chans != model.in_chans:
        found.append(f"{_plural(model.in_chans, 'channel')} vs {datamodule.in_chans}")
    return found


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def _describe(num_classes: int, class_names: Sequence[str], in_chans: int) -> str:
    """"10 classes 0..9, 1 channel" or "10 classes (T-shirt/top, Trouser, Pullover, ...), 1 channel"."""
    names = [str(n) for n in class_names]
    if names and names == [str(i) for i in range(len(names))]:
        shown = f" 0..{len(names) - 1}"
    elif names:
        shown = " (" + ", ".join(names[:3]) + (", ...)" if len(names) > 3 else ")")
    else:
        shown = ""
    return f"{_plural(num_classes, 'class')}{shown}, {_plural(in_chans, 'channel')}"


def recorded_data(checkpoint: str | os.PathLike, model: nn.Module | None = None) -> dict[str, Any]:
    """What a checkpoint records about the data it was trained on: `data` (name or folder), and where known
    `data_dir`, `data_options`, `seed` and `val_fraction`, which rebuild the run's own splits.

    Read from the run's `model.json` (`recipe`, else `data.dataset`), a Lightning .ckpt's hyperparameters
    (`recipe`), else the model's `pretrained_cfg["dataset"]`; an empty dict when nothing says.
    """
    recipe = _recorded_recipe(Path(checkpoint))
    keys = ("data", "data_dir", "data_options", "seed", "val_fraction")
    found = {k: recipe[k] for k in keys if recipe.get(k) is not None}
    if "data" not in found:
        dataset = (getattr(model, "pretrained_cfg", None) or {}).get("dataset")
        found = {"data": dataset} if dataset else {}
    return found


def _recorded_recipe(path: Path) -> dict[str, Any]:
    if path.suffix == ".ckpt" and path.is_file():
        # weights_only: plain data only, as load_checkpoint reads it; mmap avoids reading the tensors
        hp = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
        return dict(hp.get("recipe") or {})
    meta_path = metadata_path(path / MODEL_WEIGHTS if path.is_dir() else path)  # where load_checkpoint reads it
    if meta_path is None:
        return {}
    meta = json.loads(meta_path.read_text())
    recipe = dict(meta.get("recipe") or {})
    recipe["data"] = recipe.get("data") or (meta.get("data") or {}).get("dataset")
    return recipe
