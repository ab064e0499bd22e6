"""The end of a run: the selected model as `model.safetensors` + `model.json`, `metrics.json`, `model_card.md`."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning
import timm
import torch

from ..artifacts.atomic import atomic_write
from ..artifacts.cards import write_model_card
from ..artifacts.weights import save_model
from ..models import model_info
from ..version import __version__
from .config import TrainConfig


def versions() -> dict[str, str]:
    return {"effzoo": __version__, "torch": torch.__version__,
            "pytorch_lightning": pytorch_lightning.__version__, "timm": timm.__version__}


def run_metadata(model: torch.nn.Module, cfg: TrainConfig, dm: Any, metrics: Mapping[str, Any],
                 progressive: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to rebuild, preprocess for, and judge the model (the content of model.json).
    `progressive`: the progressive-learning schedule it was trained with (`ProgressiveSchedule.to_dict`)."""
    pcfg = model.pretrained_cfg
    try:
        info = model_info(model, tuple(pcfg["input_size"]))
    except Exception:  # MAC counting is informative only; never fail an export over it
        info = {"params": sum(p.numel() for p in model.parameters()), "macs": None}
    scaling = pcfg.get("scaling", {})
    try:
        split_sizes = dm.split_sizes()
    except Exception:
        split_sizes = {}
    return {
        "format": "effzoo-model/1",
        "name": f"{pcfg['model_name']}-{dm.name}",
        "model_name": pcfg["model_name"],
        "model_args": pcfg["model_args"],
        "architecture": pcfg.get("architecture"),
        "pretrained_cfg": pcfg.to_dict(),
        "class_names": list(pcfg.get("class_names", [])),
        "normalization": {"mean": list(pcfg["mean"]), "std": list(pcfg["std"])},
        "train_resolution": pcfg["input_size"][-1],
        "test_resolution": pcfg["test_input_size"][-1],
        "phi": scaling.get("phi"),
        "coefficients": scaling.get("coefficients"),
        "params": info["params"],
        "macs": info["macs"],
        "metrics": dict(metrics),
        "data": {"dataset": dm.name, "split_sizes": split_sizes},
        # The rates the run used, resolved: a card shows what model.json says, not what defaults are today.
        "recipe": {**{k: v for k, v in cfg.to_dict().items() if k != "resume"}, "lr_base": cfg.resolved_lr_base},
        "versions": versions(),
        **({"parent": dict(pcfg.parent)} if pcfg.get("parent") else {}),  # fine-tuned from (--pretrained)
        **({"progressive": dict(progressive)} if progressive else {}),  # stage sizes and rates (--progressive)
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def export_run(output: Path, module: Any, cfg: TrainConfig, dm: Any, metrics: Mapping[str, Any],
               progressive: Mapping[str, Any] | None = None) -> dict[str, Any]:
    model = module.model
    model.eval()
    multitask = hasattr(model, "task_metadata")  # a MultiTaskModel: describe the backbone, add the heads
    meta = run_metadata(model.backbone if multitask else model, cfg, dm, metrics, progressive)
    if multitask:
        meta["multitask"] = model.task_metadata()
        meta["params"] = sum(p.numel() for p in model.parameters())
    save_model(output, model, meta)
    text = json.dumps(dict(metrics), indent=2) + "\n"
    atomic_write(Path(output) / "metrics.json", lambda tmp: Path(tmp).write_text(text))
    write_model_card(output, json.loads(json.dumps(meta, default=str)))
    return meta
