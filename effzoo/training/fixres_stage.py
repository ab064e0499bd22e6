"""The FixRes stage end to end: sweep test resolutions on validation data, pick one, adapt, export.

Selection uses the validation split only; the test split is evaluated for the report at the
train resolution, at the chosen one, after BN recalibration and after fine-tuning, never to
choose anything. The input checkpoint is only read; everything goes to a new output folder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ..artifacts.atomic import atomic_write
from ..artifacts.cards import write_model_card
from ..artifacts.cards.model_card import final_fixres_stage
from ..artifacts.weights import MODEL_META, load_checkpoint, save_model
from ..evaluation.evaluate import (best_resolution, datamodule_for, evaluate_loader, parse_resolutions, predict,
                                   resolution_sweep)
from ..wording import setting
from .fixres import fit_temperature, fixres_finetune, fold_temperature, recalibrate_bn

SWEEP_FACTORS = (1.0, 1.15, 1.3, 1.5, 1.75, 2.0)  # FixRes: the no-fine-tune optimum sits near 1.15-1.3x


def default_sweep(train_res: int, stride: int) -> list[int]:
    """Train resolution times SWEEP_FACTORS, rounded to multiples of 4 (8 is too coarse for 32-px data)."""
    return sorted({max(stride, int(round(train_res * f / 4)) * 4) for f in SWEEP_FACTORS})


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("resolution", "top1", "top5", "loss", "ece", "num_samples")
    return {k: row[k] for k in keys if k in row}


def _source_meta(checkpoint: Path, model: torch.nn.Module) -> dict[str, Any]:
    """The metadata to carry over: model.json where it exists, else what the model itself knows."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for path in (checkpoint.with_suffix(".json"), folder / MODEL_META):
        if path.is_file() and path.suffix == ".json":
            return json.loads(path.read_text())
    cfg = model.pretrained_cfg
    return {"model_name": cfg["model_name"], "model_args": cfg["model_args"], "pretrained_cfg": cfg, "metrics": {}}


def fixres_stage(checkpoint: str | Path, data: str, output: str | Path, *, test_res: int | None = None,
                 sweep: str | Sequence[int] | None = None, adapt: str = "classifier+bn", epochs: int = 2,
                 lr: float = 1e-3, bn_affine: bool = False, recalibrate_only: bool = False, batch_size: int = 64,
                 data_dir: str | None = None, num_workers: int | None = None, seed: int = 0,
                 calibrate: bool = True) -> dict[str, Any]:
    """Choose the test resolution on validation data, adapt the model to it, and write a new output folder.

    With `calibrate`, a temperature fitted on the validation split at the chosen resolution is
    folded into the classifier last (test arm e): same predictions, calibrated probabilities.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    src_folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if output.resolve() == src_folder.resolve():
        raise ValueError(f"{setting('output', str(output))} is the checkpoint's own folder; the input is never modified: choose another")
    torch.manual_seed(seed)
    model = load_checkpoint(checkpoint)
    meta = _source_meta(checkpoint, model)
    dm = datamodule_for(model, data, data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed)
    dm.setup()
    train_res, stride = model.pretrained_cfg["input_size"][-1], model.total_stride
    if test_res is not None:
        resolutions = parse_resolutions([train_res, test_res], stride)
    else:
        resolutions = parse_resolutions(sweep, stride) if sweep is not None else default_sweep(train_res, stride)
    before = resolution_sweep(model, dm, resolutions, split="val")
    chosen = test_res if test_res is not None else best_resolution(before)

    def test_at(m: torch.nn.Module, res: int) -> dict[str, Any]:
        return _summary({"resolution": res, **evaluate_loader(m, dm.eval_dataloader("test", res), dm.num_classes)})

    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "data": data, "train_resolution": train_res, "test_resolution": chosen,
        "chosen_on": "val" if test_res is None else "given", "adapt": "bn-recalibration" if recalibrate_only else adapt,
        "epochs": 0 if recalibrate_only else epochs, "lr": lr, "seed": seed,
        "sweep_before": [_summary(r) for r in before],
        "test": {"a_train_resolution": test_at(model, train_res), "b_chosen_resolution": test_at(model, chosen)},
    }
    recalibrated = recalibrate_bn(copy.deepcopy(model), dm.eval_dataloader("train", chosen), which="last")
    report["test"]["c_bn_recalibrated"] = test_at(recalibrated, chosen)
    if recalibrate_only:
        model = recalibrated
    else:
        loader = dm.eval_dataloader("train", chosen, shuffle=True)
        report["finetune"] = fixres_finetune(model, loader, adapt=adapt, epochs=epochs, lr=lr, bn_affine=bn_affine,
                                             progress=True)
        report["test"]["d_finetuned"] = test_at(model, chosen)
    if calibrate:
        logits, targets, _ = predict(model, dm.eval_dataloader("val", chosen))
        temperature = fit_temperature(logits, targets)
        fold_temperature(model, temperature)
        report["calibration"] = {"temperature": temperature, "fitted_on": "val", "resolution": chosen}
        report["test"]["e_temperature_scaled"] = test_at(model, chosen)
    report["sweep_after"] = [_summary(r) for r in resolution_sweep(model, dm, resolutions, split="val")]
    _export(output, model, meta, report, chosen)
    return report


def _export(output: Path, model: torch.nn.Module, meta: dict[str, Any], report: dict[str, Any], chosen: int) -> None:
    cfg = model.pretrained_cfg
    cfg["test_input_size"] = (cfg["input_size"][0], chosen, chosen)
    final = final_fixres_stage(report["test"])
    val_after = next(r for r in report["sweep_after"] if r["resolution"] == chosen)
    meta = dict(meta, pretrained_cfg=cfg.to_dict(), test_resolution=chosen, name=f"{meta.get('name', cfg['model_name'])}-fixres{chosen}")
    metrics = dict(meta.get("metrics", {}))
    # model.json stores accuracies as fractions, like the training metrics it sits beside.
    metrics.update({"val_top1": val_after["top1"] / 100, "val_loss": val_after["loss"], "test_top1": final["top1"] / 100,
                    "test_loss": final["loss"]})
    if "top5" in final:
        metrics.update({"val_top5": val_after.get("top5", 0) / 100, "test_top5": final["top5"] / 100})
    metrics["before_fixres"] = {k: v for k, v in meta.get("metrics", {}).items() if not isinstance(v, dict)}
    meta["metrics"] = metrics
    meta["fixres"] = {k: report[k] for k in ("train_resolution", "test_resolution", "chosen_on", "adapt", "epochs", "lr", "seed")}
    meta["fixres"]["test"] = report["test"]
    if "calibration" in report:
        meta["fixres"]["calibration"] = report["calibration"]
    save_model(output, model, meta)
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(output / "fixres.json", lambda tmp: Path(tmp).write_text(text))
    write_model_card(output, json.loads(json.dumps(meta, default=str)))
