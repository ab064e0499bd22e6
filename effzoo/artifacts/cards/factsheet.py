"""A FactSheet-style declaration (Arnold et al., "FactSheets: Increasing Trust in AI Services through
Supplier's Declarations of Conformity", arXiv:1808.07261): purpose, performance, robustness checks run,
safety, security and lineage, as `factsheet.json` next to the model card. Every value comes from
model.json, analysis.json, fixres.json, the zoo index or the weights file itself, so regenerating it
from the same files gives the same bytes."""

from __future__ import annotations

import math
from typing import Any, Mapping

FACTSHEET_NAME = "factsheet.json"
FACTSHEET_FORMAT = "effzoo-factsheet/1"


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of an accuracy `p` (fraction) measured on `n` images."""
    if not n or p is None:
        return None
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def purpose(meta: Mapping[str, Any], zoo: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = meta.get("pretrained_cfg", {})
    dataset = meta.get("data", {}).get("dataset") or cfg.get("dataset")
    return {
        "task": "image classification",
        "classes": list(cfg.get("class_names") or meta.get("class_names") or []),
        "intended_use": f"research, teaching and baselines on images like those of {dataset}",
        "out_of_scope": ["decisions about people", "images unlike the training data (domain, resolution, preprocessing)",
                         "safety-critical use"],
        "demonstration_model": bool(zoo),
    }


def performance(meta: Mapping[str, Any]) -> dict[str, Any]:
    m = meta.get("metrics", {})
    sizes = meta.get("data", {}).get("split_sizes", {})
    out: dict[str, Any] = {
        "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "units": "accuracies are fractions of 1; losses are cross-entropy in nats",
        "model_selection": "checkpoint with the best validation top-1; the test split scored once, on that model",
        "test_resolution": meta.get("test_resolution"),
    }
    for split, key in (("test", "test_top1"), ("val", "val_top1")):
        ci = wilson_interval(m.get(key), sizes.get(split, 0))
        if ci:
            out[f"{key}_ci95"] = [round(ci[0], 4), round(ci[1], 4)]
            out[f"{split}_images"] = sizes[split]
    return out


def robustness(analysis: Mapping[str, Any] | None, fixres: Mapping[str, Any] | None) -> dict[str, Any]:
    checks, not_run = [], []
    if analysis:
        checks.append({
            "check": "resolution sweep", "split": analysis["split"], "data": analysis["data"], "source": "analysis.json",
            "results": [{"resolution": r["resolution"], "top1": round(r["top1"], 2), "macs": r.get("macs")}
                        for r in analysis["resolutions"]],
        })
        at = next(r for r in analysis["resolutions"] if r["resolution"] == analysis["test_resolution"])
        if "ece" in at:
            checks.append({"check": "calibration (expected calibration error, 15 bins)", "split": analysis["split"],
                           "ece": round(at["ece"], 4), "source": "analysis.json"})
        per = sorted(analysis["per_class"], key=lambda c: c["top1"])
        checks.append({"check": "per-class accuracy", "split": analysis["split"], "source": "analysis.json",
                       "worst": {"class": per[0]["class"], "top1": round(per[0]["top1"], 2)},
                       "best": {"class": per[-1]["class"], "top1": round(per[-1]["top1"], 2)}})
    else:
        not_run.append("resolution sweep and per-class accuracy (run `effzoo card --checkpoint DIR --evaluate`)")
    if fixres:
        checks.append({
            "check": "FixRes resolution sweep (train/test resolution discrepancy, Touvron et al. 2019)",
            "split": "val", "source": "fixres.json", "chosen_test_resolution": fixres.get("test_resolution"),
            "before": [{"resolution": r["resolution"], "top1": round(r["top1"], 2)} for r in fixres.get("sweep_before", [])],
            "after": [{"resolution": r["resolution"], "top1": round(r["top1"], 2)} for r in fixres.get("sweep_after", [])],
        })
    not_run += ["adversarial robustness", "natural distribution shift (other datasets)", "corruptions (noise, blur)"]
    return {"checks_run": checks, "not_run": not_run}


def build_factsheet(meta: Mapping[str, Any], *, analysis: Mapping[str, Any] | None = None,
                    fixres: Mapping[str, Any] | None = None, zoo: Mapping[str, Any] | None = None,
                    weights: Mapping[str, Any] | None = None, datasheet: str | None = None) -> dict[str, Any]:
    cfg, recipe = meta.get("pretrained_cfg", {}), meta.get("recipe", {})
    scaling = cfg.get("scaling", {})
    versions = dict(meta.get("versions", {}))
    if zoo and zoo.get("reproduce", {}).get("code_revision"):
        versions.setdefault("git", zoo["reproduce"]["code_revision"])
    return {
        "format": FACTSHEET_FORMAT,
        "reference": "Arnold et al., FactSheets: Increasing Trust in AI Services through Supplier's Declarations "
                     "of Conformity, IBM J. Res. Dev. 2019 (arXiv:1808.07261)",
        "name": (zoo or {}).get("name") or meta.get("name") or meta.get("model_name"),
        "purpose": purpose(meta, zoo),
        "model": {
            "model_name": meta.get("model_name"), "model_args": meta.get("model_args"),
            "family": scaling.get("family"), "phi": scaling.get("phi"), "coefficients": scaling.get("coefficients"),
            "params": meta.get("params"), "macs": meta.get("macs"),
            "train_resolution": meta.get("train_resolution"), "test_resolution": meta.get("test_resolution"),
        },
        "performance": performance(meta),
        "robustness": robustness(analysis, fixres),
        "safety": {"fairness": "not assessed: the data has no group attributes", "explainability": "none provided",
                   "intended_for_people_decisions": False},
        "security": {"weights_format": "safetensors (loading executes no code)",
                     "integrity": "sha256 below; shipped models are refused when it disagrees with checkpoints/index.json"},
        "lineage": {
            "data": {"dataset": meta.get("data", {}).get("dataset"), "split_sizes": meta.get("data", {}).get("split_sizes"),
                     "datasheet": datasheet, "seed": recipe.get("seed"), "train_limit": recipe.get("train_limit")},
            "recipe": dict(recipe),
            "fixres": meta.get("fixres"),
            **({"parent": meta["parent"]} if meta.get("parent") else {}),  # the weights it was fine-tuned from
            "code": versions,
            "weights": dict(weights or {}),
            "reproduce": (zoo or {}).get("reproduce"),
            "created": meta.get("created"),
        },
    }
