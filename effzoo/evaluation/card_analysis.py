"""The card's Quantitative Analyses: per-class accuracy on the test split and top-1 across resolutions.

`run_analysis(folder)` loads the checkpoint, rebuilds the splits of its run (same dataset, seed and
options, so the test images are the ones training scored) and writes `analysis.json` beside it.
Cards and factsheets read that file; they never invent numbers they did not measure.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..version import __version__
from ..artifacts.atomic import atomic_write
from ..artifacts.cards.analysis import ANALYSIS_FORMAT, ANALYSIS_NAME
from ..artifacts.weights import MODEL_META, load_checkpoint
from ..wording import setting
from .evaluate import datamodule_for, parse_resolutions, resolution_sweep



def default_resolutions(train_res: int, test_res: int, stride: int = 1) -> list[int]:
    """The train and test resolutions, and 0.75x / 1.25x / 1.5x the test resolution (at least the stride)."""
    picks = {train_res, test_res, *(round(test_res * f) for f in (0.75, 1.25, 1.5))}
    return sorted(r for r in picks if r >= max(stride, 1))


def run_analysis(folder: str | os.PathLike, data: str | None = None, *, split: str = "test",
                 resolutions: Sequence[int] | None = None, data_dir: str | None = None, batch_size: int = 128,
                 num_workers: int | None = 0, write: bool = True) -> dict[str, Any]:
    """Evaluate the checkpoint in `folder` and (by default) write `folder/analysis.json`."""
    folder = Path(folder)
    meta_path = folder / MODEL_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} has no {MODEL_META}: give an effzoo output folder (model.safetensors + model.json)")
    meta = json.loads(meta_path.read_text())
    model = load_checkpoint(folder)
    recipe = meta.get("recipe", {})
    trained_on = recipe.get("data") or meta.get("data", {}).get("dataset")
    data = data or trained_on
    if not data:
        raise ValueError(f"{meta_path} does not say which data the model was trained on: pass {setting('data')}")
    same = str(data) == str(trained_on)
    options = dict(recipe.get("data_options") or {}) if same else {}
    dm = datamodule_for(model, data, data_dir=data_dir or (recipe.get("data_dir") if same else None),
                        batch_size=batch_size, num_workers=num_workers, seed=recipe.get("seed", 0) if same else 0,
                        val_fraction=recipe.get("val_fraction") if same else None, **options)
    dm.setup()
    cfg = model.pretrained_cfg
    train_res, test_res = cfg["input_size"][-1], cfg["test_input_size"][-1]
    stride = getattr(model, "total_stride", 1)
    res = parse_resolutions(resolutions, stride) if resolutions else default_resolutions(train_res, test_res, stride)
    if test_res not in res:
        res = sorted({*res, test_res})
    rows = resolution_sweep(model, dm, res, split=split, with_macs=True)
    at_test = next(r for r in rows if r["resolution"] == test_res)
    support = [sum(row) for row in at_test["confusion_matrix"]]
    names = list(cfg.get("class_names") or dm.class_names)
    keep = ("resolution", "top1", "top5", "loss", "ece", "macs", "images_per_s", "num_samples")
    result = {
        "format": ANALYSIS_FORMAT,
        "data": str(data),
        "same_data_as_training": same,
        "split": split,
        "num_samples": at_test["num_samples"],
        "train_resolution": train_res,
        "test_resolution": test_res,
        "resolutions": [{k: r[k] for k in keep if k in r} for r in rows],
        "per_class": [{"class": n, "top1": a, "support": s} for n, a, s in zip(names, at_test["per_class_top1"], support)],
        "confusion_matrix": at_test["confusion_matrix"],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "effzoo": __version__},
        "threads": torch.get_num_threads(),
    }
    if write:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(folder / ANALYSIS_NAME, lambda tmp: Path(tmp).write_text(text))
    return result
