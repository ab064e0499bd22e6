"""Model cards (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019) for trained models.

`write_model_card(folder, meta)` turns the metadata that `effzoo train` stores in `model.json`
into `model_card.md`: YAML front matter in Hugging Face's model-index form, then the paper's nine
sections, each filled from what the run actually knows (and saying so where it knows nothing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

CARD_NAME = "model_card.md"
SECTIONS = (
    "Model Details", "Intended Use", "Factors", "Metrics", "Evaluation Data", "Training Data",
    "Quantitative Analyses", "Ethical Considerations", "Caveats and Recommendations",
)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f}%"


def front_matter(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Hugging Face card metadata with a `model-index` of the measured top-1/top-5."""
    m, cfg = meta.get("metrics", {}), meta.get("pretrained_cfg", {})
    dataset = cfg.get("dataset") or meta.get("recipe", {}).get("data", "unknown")
    results = []
    for split, key in (("validation", "val"), ("test", "test")):
        metrics = [{"type": "accuracy", "name": f"Top-{k}", "value": round(100 * float(m[f"{key}_top{k}"]), 2)}
                   for k in (1, 5) if m.get(f"{key}_top{k}") is not None]
        if metrics:
            results.append({"task": {"type": "image-classification"},
                            "dataset": {"name": str(dataset), "type": str(dataset), "split": split},
                            "metrics": metrics})
    return {
        "tags": ["image-classification", "effzoo", str(cfg.get("architecture", meta.get("model_name")))],
        "library_name": "effzoo",
        "license": "apache-2.0",
        "datasets": [str(dataset)],
        "metrics": ["accuracy"],
        "model-index": [{"name": meta.get("name", meta.get("model_name", "model")), "results": results}],
    }


def render_model_card(meta: Mapping[str, Any]) -> str:
    cfg, recipe, m = meta.get("pretrained_cfg", {}), meta.get("recipe", {}), meta.get("metrics", {})
    scaling = cfg.get("scaling", {})
    data = meta.get("data", {})
    dataset = cfg.get("dataset") or recipe.get("data", "unknown")
    classes = cfg.get("class_names") or []
    res, test_res = cfg.get("input_size", [None] * 3)[-1], cfg.get("test_input_size", [None] * 3)[-1]
    sizes = ", ".join(f"{k} {v}" for k, v in data.get("split_sizes", {}).items()) or "not recorded"
    phi = scaling.get("phi")
    coeff = scaling.get("coefficients")
    body = {
        "Model Details": [
            f"- Architecture: `{meta.get('model_name')}` ({scaling.get('family', cfg.get('architecture'))}), "
            f"built with `effzoo.create_model({meta.get('model_name')!r}, **model_args)`; model_args: `{meta.get('model_args')}`.",
            f"- Compound scaling: phi = {phi}, coefficients (alpha, beta, gamma) = {coeff}; depth x{scaling.get('depth', 1):.3g}, "
            f"width x{scaling.get('width', 1):.3g}, resolution x{scaling.get('resolution', 1):.3g}.",
            f"- Size: {meta.get('params', 'n/a')} parameters, {meta.get('macs', 'n/a')} multiply-adds at {res} px.",
            f"- Input: {cfg.get('input_size')} at training, {cfg.get('test_input_size')} at test; crop_pct {cfg.get('crop_pct')}, "
            f"{cfg.get('interpolation')} interpolation, mean {cfg.get('mean')}, std {cfg.get('std')}.",
            f"- Training: {recipe.get('epochs')} epochs, optimizer {recipe.get('opt')}, schedule {recipe.get('sched')}, "
            f"batch {recipe.get('batch_size')} per device, EMA decay {recipe.get('ema_decay')}, seed {recipe.get('seed')} "
            f"(full recipe below).",
            f"- Software: {', '.join(f'{k} {v}' for k, v in meta.get('versions', {}).items())}. Created {meta.get('created', 'n/a')}.",
            "- Paper: Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019. "
            "License: Apache-2.0.",
        ],
        "Intended Use": [
            f"Classifying images like those of `{dataset}` into its {len(classes)} classes"
            f"{': ' + ', '.join(map(str, classes[:20])) + (' ...' if len(classes) > 20 else '') if classes else ''}. "
            "Intended for research, teaching and as a baseline. Out of scope: any decision about people, and images "
            "unlike the training data (other domains, resolutions or preprocessing), where accuracy is unknown.",
        ],
        "Factors": [
            "Accuracy may vary with image source, resolution, class and acquisition conditions. This run records no "
            "per-group factors; only the aggregate split metrics below were measured.",
        ],
        "Metrics": [
            "Top-1 and top-5 accuracy (torchmetrics, micro-averaged) on held-out splits. The model was selected by "
            "validation top-1; the test split was evaluated once, on the selected model. No confidence intervals "
            "were estimated (single run, single seed).",
        ],
        "Evaluation Data": [
            f"Validation and test splits of `{dataset}` (split sizes: {sizes}), resized and center-cropped to "
            f"{test_res} px with crop_pct {cfg.get('crop_pct')}.",
        ],
        "Training Data": [
            f"The training split of `{dataset}`; augmentation: RandomResizedCrop, RandAugment `{recipe.get('rand_augment')}`, "
            f"mixup {recipe.get('mixup')}, cutmix {recipe.get('cutmix')}, random erasing {recipe.get('random_erasing')}, "
            f"label smoothing {recipe.get('label_smoothing')}; trained at {res} px.",
        ],
        "Quantitative Analyses": [
            "| split | top-1 | top-5 |", "|---|---|---|",
            f"| validation (epoch {m.get('best_epoch', 'n/a')}) | {_pct(m.get('val_top1'))} | {_pct(m.get('val_top5'))} |",
            f"| test | {_pct(m.get('test_top1'))} | {_pct(m.get('test_top5'))} |",
        ],
        "Ethical Considerations": [
            "The model inherits the biases and labelling errors of its training data. It was not assessed for "
            "fairness across groups; do not use it where errors could harm people without such an assessment.",
        ],
        "Caveats and Recommendations": [
            "Preprocess inputs exactly as in `pretrained_cfg` (normalization, resolution, crop); accuracy is sensitive to "
            "them. Re-evaluate on your own data before relying on the numbers above.",
            "", "Recipe (`config.yaml` of the run):", "", "```yaml", yaml.safe_dump(dict(recipe), sort_keys=False).rstrip(), "```",
        ],
    }
    name = meta.get("name", meta.get("model_name", "model"))
    lines = ["---", yaml.safe_dump(front_matter(meta), sort_keys=False, default_flow_style=None, width=120).rstrip(), "---", "",
             f"# Model card for {name}", ""]
    for section in SECTIONS:
        lines += [f"## {section}", "", *body[section], ""]
    return "\n".join(lines)


def write_model_card(folder: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write `folder/model_card.md` from model metadata (the content of `model.json`), atomically."""
    from .checkpoints import atomic_write

    text = render_model_card(meta)
    return atomic_write(Path(folder) / CARD_NAME, lambda tmp: Path(tmp).write_text(text))
