"""A tiny exported model folder (model.safetensors + model.json) built without training, for card and zoo tests.

The metadata is what `effzoo train` writes (`run_metadata`), and its metrics are measured: the
untrained model is evaluated on the synthetic val/test splits, so every number is real.
"""

from pathlib import Path

import torch

import effzoo
from effzoo.artifacts.weights import apply_data_config, save_model
from effzoo.data import create_datamodule
from effzoo.evaluation.evaluate import evaluate_loader
from effzoo.training.config import resolve
from effzoo.training.outputs import run_metadata

OPTIONS = {"size": 16, "num_samples": 64}


def make_tiny_model_folder(folder: Path) -> Path:
    torch.manual_seed(0)
    cfg = resolve({"model": "mobilenetv2_035", "data": "synthetic", "epochs": 1, "batch_size": 16,
                   "data_options": dict(OPTIONS), "num_workers": 0, "output": str(folder)})
    dm = create_datamodule("synthetic", batch_size=16, num_workers=0, rand_augment=None, **OPTIONS)
    dm.setup()
    model = effzoo.create_model("mobilenetv2_035", num_classes=dm.num_classes, in_chans=dm.in_chans, small_input=True)
    apply_data_config(model, dm.data_config).eval()
    metrics = {"best_epoch": 0, "epochs_run": 1}
    for split in ("val", "test"):
        m = evaluate_loader(model, dm.eval_dataloader(split, 16), dm.num_classes)
        metrics.update({f"{split}_top1": m["top1"] / 100, f"{split}_top4": m["top4"] / 100, f"{split}_loss": m["loss"]})
    metrics["val_top5"], metrics["test_top5"] = metrics.pop("val_top4"), metrics.pop("test_top4")  # 4 classes: top-4
    meta = run_metadata(model, cfg, dm, metrics)
    save_model(folder, model, meta)
    return folder
