"""Model cards (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019, arXiv:1810.03993).

`write_model_card(folder, meta)` turns the metadata that `effzoo train` stores in `model.json` (and,
where present in the folder, `analysis.json`, `fixres.json` and the zoo index entry) into
`model_card.md`: YAML front matter in Hugging Face's model-index form, then the paper's nine
sections, each filled from what was measured (and saying so where nothing was). It also copies the
dataset's datasheet next to the card and writes `factsheet.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ...tasks import TASK_METRICS
from ..atomic import atomic_write
from ..zoo_index import index_entry_for, sha256_file
from . import datasheets
from .analysis import read_analysis
from .factsheet import FACTSHEET_NAME, build_factsheet, wilson_interval

CARD_NAME = "model_card.md"
INT8_META = "model.int8.json"  # beside model.int8.onnx: model.json plus the int8 accuracy check
SECTIONS = (
    "Model Details", "Intended Use", "Factors", "Metrics", "Evaluation Data", "Training Data",
    "Quantitative Analyses", "Ethical Considerations", "Caveats and Recommendations",
)
SPLITS = (("validation", "val"), ("test", "test"))


@dataclass
class CardContext:
    """What a card may use beyond model.json: measured analyses, FixRes report, zoo entry, weights digest."""

    analysis: dict[str, Any] | None = None
    fixres: dict[str, Any] | None = None
    zoo: dict[str, Any] | None = None
    weights: dict[str, Any] | None = None
    datasheets: dict[str, str] = field(default_factory=dict)  # dataset name -> file name beside the card
    int8: dict[str, Any] | None = None  # the accuracy check of `effzoo export --quantize int8` (model.int8.json)


def load_context(folder: str | os.PathLike, meta: Mapping[str, Any]) -> CardContext:
    folder = Path(folder)
    weights = folder / "model.safetensors"
    fixres_path = folder / "fixres.json"
    ctx = CardContext(
        analysis=read_analysis(folder),
        fixres=json.loads(fixres_path.read_text()) if fixres_path.is_file() else None,
        int8=read_int8_check(folder),
        zoo=index_entry_for(folder),
        weights={"file": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size}
        if weights.is_file() else None,
    )
    for name in {_dataset(meta), *([ctx.analysis["data"]] if ctx.analysis else [])}:
        ctx.datasheets[name] = datasheets.copy_datasheet(folder, name).name
    return ctx


def read_int8_check(folder: Path) -> dict[str, Any] | None:
    """The `quantization` block of `model.int8.json` (written by `effzoo export --quantize int8`), if any."""
    path = folder / INT8_META
    if not path.is_file():
        return None
    block = json.loads(path.read_text()).get("quantization") or {}
    return block if block.get("accuracy") else None


def _int8_lines(q: Mapping[str, Any]) -> list[str]:
    a = q["accuracy"]
    return ["", f"int8 deployment (`{INT8_META.replace('.json', '.onnx')}`, ONNX Runtime, {q.get('format')}, "
                f"{q.get('weights')} weights): {a['split']} top-1 on {a['images']} images of `{a['data']}`:", "",
            "| model | top-1 |", "|---|---|", f"| float32 ONNX | {a['float_top1']:.2f}% |", f"| int8 ONNX | {a['int8_top1']:.2f}% |",
            "", f"A drop of {a['drop']:.2f} points (allowed {a['max_drop']:g}"
                + ("; written anyway with --force" if a.get("forced") and a["drop"] > a["max_drop"] else "")
                + f"); the two agree on the top-1 class of {a['agreement']:.1f}% of the images."]


def _dataset(meta: Mapping[str, Any]) -> str:
    return str(meta.get("data", {}).get("dataset") or meta.get("pretrained_cfg", {}).get("dataset")
               or meta.get("recipe", {}).get("data") or "unknown")


def _name(meta: Mapping[str, Any], ctx: CardContext) -> str:
    return str((ctx.zoo or {}).get("name") or meta.get("name") or meta.get("model_name") or "model")


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f}%"


def _topk(row: Mapping[str, Any]) -> str:
    # evaluate names top-k by k = min(5, classes): "top4" with 4 classes
    key = next((k for k in row if k.startswith("top") and k != "top1"), None)
    return "n/a" if key is None else f"{row[key]:.2f}%"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def front_matter(meta: Mapping[str, Any], ctx: CardContext | None = None) -> dict[str, Any]:
    """Hugging Face card metadata: a `model-index` of the measured top-1/top-5 (percent, 2 decimals)."""
    ctx = ctx or CardContext()
    m, cfg, dataset = meta.get("metrics", {}), meta.get("pretrained_cfg", {}), _dataset(meta)
    scaling = cfg.get("scaling", {})
    results = []
    for split, key in SPLITS:
        metrics = [{"type": "accuracy", "name": f"Top-{k}", "value": round(100 * float(m[f"{key}_top{k}"]), 2)}
                   for k in (1, 5) if m.get(f"{key}_top{k}") is not None]
        if metrics:
            results.append({"task": {"type": "image-classification", "name": "Image Classification"},
                            "dataset": {"name": dataset, "type": dataset, "split": split},
                            "metrics": metrics})
    return {
        "tags": ["image-classification", "effzoo", str(scaling.get("family") or cfg.get("architecture") or meta.get("model_name"))],
        "library_name": "effzoo",
        "license": "apache-2.0",
        "pipeline_tag": "image-classification",
        "datasets": [dataset],
        "metrics": ["accuracy"],
        "effzoo": {  # the numbers a reader (and tests) check against the real model
            "model_name": meta.get("model_name"), "model_args": dict(meta.get("model_args", {})),
            "params": meta.get("params"), "macs": meta.get("macs"), "phi": scaling.get("phi"),
            "train_resolution": meta.get("train_resolution"), "test_resolution": meta.get("test_resolution"),
            "weights_sha256": (ctx.weights or {}).get("sha256"),
            **({"parent": {k: meta["parent"].get(k) for k in ("source", "kind", "sha256")}} if meta.get("parent") else {}),
        },
        # Hugging Face's field for a fine-tune's origin; it names a hub repo, so only hub parents fill it.
        **({"base_model": meta["parent"]["name"]} if (meta.get("parent") or {}).get("kind") == "hub" else {}),
        "model-index": [{"name": _name(meta, ctx), "results": results}],
    }


def _model_details(meta: Mapping[str, Any], ctx: CardContext) -> list[str]:
    cfg, recipe, versions = meta.get("pretrained_cfg", {}), meta.get("recipe", {}), meta.get("versions", {})
    sc = cfg.get("scaling", {})
    phi, coeff = sc.get("phi"), sc.get("coefficients")
    if phi is not None:
        scaling = (f"- **Compound scaling:** phi = {phi:g}, (alpha, beta, gamma) = {tuple(coeff or ())}: depth x{sc.get('depth', 1):.3f}, "
                   f"width x{sc.get('width', 1):.3f}, resolution x{sc.get('resolution', 1):.3f} of the {sc.get('family')} baseline "
                   f"(d = alpha^phi, w = beta^phi, r = gamma^phi; Tan & Le 2019).")
    else:
        scaling = (f"- **Scaling:** not compound-scaled; preset `{sc.get('preset', meta.get('model_name'))}` "
                   f"(depth x{sc.get('depth', 1):g}, width x{sc.get('width', 1):g}).")
    params, macs, res = meta.get("params"), meta.get("macs"), meta.get("train_resolution")
    test_res = meta.get("test_resolution")
    fix = meta.get("fixres")
    in_ch = (cfg.get("input_size") or [None])[0]
    git = (ctx.zoo or {}).get("reproduce", {}).get("code_revision")
    lines = [
        f"- **Developed by:** the effzoo project, with `effzoo train`; effzoo {versions.get('effzoo', 'n/a')}"
        f"{f' (git {git})' if git else ''}. **Date:** {meta.get('created', 'n/a')}.",
        f"- **Model type:** convolutional image classifier, `{meta.get('model_name')}` ({sc.get('family', cfg.get('architecture'))} "
        f"family), arguments `{json.dumps(meta.get('model_args', {}))}`.",
        scaling,
        f"- **Size:** {_num(params)} parameters ({(params or 0) / 1e6:.2f} M); {_num(macs)} multiply-accumulates "
        f"({(macs or 0) / 1e6:.2f} M MACs) per image at {res} px" + _test_macs(meta, ctx) + ".",
        f"- **Resolution:** trained at {res} px, tested at {test_res} px"
        + (f" (FixRes: test resolution {'set by --test-res' if fix.get('chosen_on') == 'given' else 'chosen on ' + str(fix.get('chosen_on'))}"
           f", then `{fix.get('adapt')}` fine-tuned there for {fix.get('epochs')} epoch(s))." if fix else "."),
        f"- **Preprocessing:** {in_ch} channel(s); resize to floor(res / {cfg.get('crop_pct')}) with {cfg.get('interpolation')} "
        f"interpolation, center-crop to res, scale to 0-1, normalize with mean {list(cfg.get('mean', []))} and std "
        f"{list(cfg.get('std', []))}. Class order: {', '.join(map(str, cfg.get('class_names', [])))}.",
        f"- **Training recipe:** {recipe.get('epochs')} epoch(s), {recipe.get('opt')} (lr_base {_lr_base(recipe)} per 256 "
        f"images{'' if recipe.get('lr') is None else ', lr ' + str(recipe.get('lr'))}), {recipe.get('sched')} schedule after "
        f"{recipe.get('warmup_epochs')} warm-up epoch(s), weight decay {recipe.get('weight_decay')}, batch {recipe.get('batch_size')}, "
        f"label smoothing {recipe.get('label_smoothing')}, drop path {recipe.get('drop_path_rate')}, EMA {recipe.get('ema_decay')}, "
        f"precision {recipe.get('precision')}, seed {recipe.get('seed')}. Full recipe under Caveats and Recommendations.",
    ]
    if ctx.weights:
        lines.append(f"- **Weights:** `{ctx.weights['file']}` ({ctx.weights['bytes']:,} bytes), "
                     f"sha256 `{ctx.weights['sha256']}`.")
    if meta.get("parent"):
        lines.append(_parent_line(meta["parent"]))
    lines += [
        f"- **Software:** {', '.join(f'{k} {v}' for k, v in versions.items()) or 'not recorded'}.",
        "- **Papers:** Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019 "
        "(arXiv:1905.11946)" + ("; Touvron et al., Fixing the train-test resolution discrepancy, NeurIPS 2019 "
                                "(arXiv:1906.06423)" if fix else "") + ".",
        f"- **License:** Apache-2.0 (code and weights); training data: {datasheets.notes(_dataset(meta))['license']}.",
        "- **Contact:** the effzoo issue tracker.",
    ]
    return lines


def _progressive_lines(progressive: Mapping[str, Any] | None) -> list[str]:
    """The progressive-learning schedule (model.json `progressive`, from `effzoo train --progressive`)."""
    if not progressive:
        return []
    lines = [f"- Progressive learning (EfficientNetV2): {progressive['stages']} stages over {progressive['epochs']} epochs, "
             f"{progressive['min_size']} -> {progressive['final_size']} px; validation and test at the final size."]
    for st in progressive.get("schedule", []):
        lines.append(f"  - epochs {st['first_epoch'] + 1}-{st['last_epoch'] + 1}: {st['image_size']} px, RandAugment "
                     f"`{st['rand_augment']}`, mixup {st['mixup']:.3g}, dropout {st['drop_rate']:.3g}, drop path "
                     f"{st['drop_path_rate']:.3g}")
    return lines


def _parent_line(parent: Mapping[str, Any]) -> str:
    """Where a fine-tuned model started (model.json `parent`, written by `effzoo train --pretrained`)."""
    origin = f" ({parent['model_name']}" + (f" trained on {parent['dataset']})" if parent.get("dataset") else ")") \
        if parent.get("model_name") else ""
    changes = [f"{'a new' if parent.get('classifier') == 'new' else 'its own'} classifier"]
    if parent.get("input_channels"):
        changes.append(f"input channels adapted {parent['input_channels']}")
    return (f"- **Fine-tuned from:** `{parent.get('name') or parent.get('path') or parent.get('source')}`{origin}, "
            f"{parent.get('kind')} weights with sha256 `{parent.get('sha256')}`; {', '.join(changes)}.")


def _lr_base(recipe: Mapping[str, Any]) -> str:
    # model.json records the rate the run used (training resolves the optimizer's default before export).
    if recipe.get("lr_base") is not None:
        return f"{recipe['lr_base']:g}"
    return "the optimizer's default (not recorded)"


def _test_macs(meta: Mapping[str, Any], ctx: CardContext) -> str:
    test_res = meta.get("test_resolution")
    if test_res == meta.get("train_resolution"):
        return ""
    rows = {r["resolution"]: r.get("macs") for r in (ctx.analysis or {}).get("resolutions", [])}
    macs = rows.get(test_res) or ((ctx.zoo or {}).get("test_macs") if ctx.zoo else None)
    return f", {_num(macs)} at the {test_res} px test resolution" if macs else ""


def _quantitative(meta: Mapping[str, Any], ctx: CardContext) -> list[str]:
    m, sizes = meta.get("metrics", {}), meta.get("data", {}).get("split_sizes", {})
    lines = ["Headline numbers (model.json, at the test resolution; 95% Wilson interval of top-1):", "",
             "| split | images | top-1 | top-1 95% CI | top-5 | loss |", "|---|---|---|---|---|---|"]
    for split, key in SPLITS:
        ci = wilson_interval(m.get(f"{key}_top1"), sizes.get(key, 0))
        ci_text = f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%" if ci else "n/a"
        lines.append(f"| {split} | {sizes.get(key, 'n/a')} | {_pct(m.get(f'{key}_top1'))} | {ci_text} | "
                     f"{_pct(m.get(f'{key}_top5'))} | {m.get(f'{key}_loss', float('nan')):.4f} |")
    fix = meta.get("fixres")
    if fix and fix.get("test"):
        lines += ["", "FixRes stages (test split):", "", "| stage | resolution | top-1 | loss | ECE |", "|---|---|---|---|---|"]
        for stage, row in fix["test"].items():
            lines.append(f"| {stage.split('_', 1)[-1].replace('_', ' ')} | {row.get('resolution')} | {row.get('top1', 0):.2f}% | "
                         f"{_number(row.get('loss'))} | {_number(row.get('ece'))} |")
        if fix.get("calibration"):
            lines += ["", f"The last stage divides the classifier by a temperature of {fix['calibration']['temperature']:.3f} "
                          "fitted on the validation split (Guo et al. 2017): the same predictions, calibrated probabilities."]
    if ctx.fixres and ctx.fixres.get("sweep_before"):
        after = {r["resolution"]: r for r in ctx.fixres.get("sweep_after", [])}
        lines += ["", "FixRes sweep on validation (fixres.json):", "", "| resolution | top-1 before | top-1 after |",
                  "|---|---|---|"]
        for r in ctx.fixres["sweep_before"]:
            a = after.get(r["resolution"], {}).get("top1")
            lines.append(f"| {r['resolution']} | {r['top1']:.2f}% | {'n/a' if a is None else f'{a:.2f}%'} |")
    if ctx.int8:
        lines += _int8_lines(ctx.int8)
    a = ctx.analysis
    if not a:
        lines += ["", "Per-class and per-resolution numbers were not measured for this card; "
                      "`effzoo card --checkpoint DIR --evaluate` measures and adds them."]
        return lines
    lines += ["", f"Top-1 by test resolution ({a['split']} split of `{a['data']}`, {a['num_samples']} images; "
                  f"analysis.json, {a['created']}):", "",
              f"| resolution | MACs | top-1 | top-{min(5, len(a['per_class']))} | loss | ECE |", "|---|---|---|---|---|---|"]
    for r in a["resolutions"]:
        mark = " (test)" if r["resolution"] == a["test_resolution"] else ""
        lines.append(f"| {r['resolution']}{mark} | {_num(r.get('macs'))} | {r['top1']:.2f}% | {_topk(r)} "
                     f"| {r['loss']:.4f} | {r.get('ece', float('nan')):.4f} |")
    lines += ["", f"Per-class top-1 at {a['test_resolution']} px ({a['split']} split):", "",
              "| class | images | top-1 |", "|---|---|---|"]
    lines += [f"| {c['class']} | {c['support']} | {c['top1']:.2f}% |" for c in a["per_class"]]
    return lines


def _tasks(meta: Mapping[str, Any]) -> list[str]:
    """The heads of a multi-task checkpoint (empty for a single-task one), with each task's test metric."""
    mt, m = meta.get("multitask"), meta.get("metrics", {})
    if not mt:
        return []
    lines = ["", "### Tasks (multi-task heads on a shared backbone)", "",
             f"Feature size {mt['num_features']}, feature norm {mt['feature_norm']}; the first task is the main one.",
             "", "| task | kind | outputs | weight | label source | test metric |", "|---|---|---|---|---|---|"]
    for t in mt["tasks"]:
        metric = TASK_METRICS.get(t["kind"], ("top1",))[0]
        value = m.get(f"test_{t['name']}_{metric}")
        lines.append(f"| {t['name']} | {t['kind']} | {t['num_outputs']} | {t['weight']:g} | {t['source']} | "
                     f"{'' if value is None else f'{metric} {float(value):.4f}'} |")
    return lines


FIXRES_FINAL_STAGES = ("e_temperature_scaled", "d_finetuned", "c_bn_recalibrated")  # latest first


def final_fixres_stage(stages: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The test row of the last FixRes stage that ran: the model that was exported."""
    return next((stages[k] for k in FIXRES_FINAL_STAGES if k in stages), None)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def _measured_caveats(meta: Mapping[str, Any], ctx: CardContext) -> list[str]:
    """Warnings the measurements call for: a FixRes stage that lost accuracy, a steep resolution sensitivity."""
    out = []
    stages = (meta.get("fixres") or {}).get("test") or {}
    base = stages.get("a_train_resolution")
    final = final_fixres_stage(stages)
    if base and final and final["top1"] < base["top1"]:
        out.append(f"- FixRes did not help this model: {final['top1']:.2f}% test top-1 at {final['resolution']} px after "
                   f"adaptation, against {base['top1']:.2f}% for the model it started from at {base['resolution']} px. "
                   "Prefer that model unless you need this resolution.")
    a = ctx.analysis
    if a:
        at = next(r for r in a["resolutions"] if r["resolution"] == a["test_resolution"])
        worst = min(a["resolutions"], key=lambda r: r["top1"])
        if at["top1"] - worst["top1"] > 10:
            out.append(f"- Accuracy depends steeply on input resolution: {worst['top1']:.2f}% at {worst['resolution']} px "
                       f"against {at['top1']:.2f}% at the {a['test_resolution']} px test resolution. Feed exactly "
                       f"{a['test_resolution']} px inputs.")
    return out


def render_model_card(meta: Mapping[str, Any], ctx: CardContext | None = None) -> str:
    ctx = ctx or CardContext()
    cfg, recipe, m = meta.get("pretrained_cfg", {}), meta.get("recipe", {}), meta.get("metrics", {})
    dataset, notes = _dataset(meta), datasheets.notes(_dataset(meta))
    sizes = meta.get("data", {}).get("split_sizes", {})
    classes = list(cfg.get("class_names") or [])
    sheet = ctx.datasheets.get(dataset)
    sheet_link = f"[datasheet]({sheet}) (Gebru et al.)" if sheet else "datasheet: none written"
    zoo, name = ctx.zoo, _name(meta, ctx)
    demo = (f"This is a **small demonstration model** shipped in effzoo's zoo: trained with the project's CPU recipe "
            f"in {zoo['reproduce'].get('train_seconds') or 'n/a'} s on {zoo['reproduce'].get('hardware') or 'CPU'}. It shows "
            f"the pipeline end to end; it is not a competitive result.") if zoo else None
    eval_data = ctx.analysis["data"] if ctx.analysis else dataset
    body = {
        "Model Details": _model_details(meta, ctx),
        "Intended Use": [
            f"- **Primary uses:** classifying images like those of {notes['title']} into its {len(classes)} classes; "
            "research, teaching, and a baseline for compound-scaling experiments."
            + (" A small demonstration model (see Caveats and Recommendations)." if demo else ""),
            "- **Primary users:** machine-learning researchers, students and effzoo developers.",
            "- **Out of scope:** any decision about people; images unlike the training data (other domains, "
            "resolutions, colour or preprocessing), where accuracy is unknown; safety-critical use.",
        ],
        "Factors": [
            f"- **Relevant factors:** {notes['factors']}",
            "- **Evaluation factors:** "
            + ("class (per-class accuracy) and input resolution (top-1 by resolution), below." if ctx.analysis else
               "aggregate accuracy only; per-class and per-resolution results are added by `effzoo card --evaluate`.")
            + " The data carries no demographic or group attributes, so no group-wise results are possible.",
        ],
        "Metrics": [
            "- Top-1 and top-5 accuracy (micro-averaged), cross-entropy loss and, in the analyses, expected calibration "
            "error (15 equal-width bins). Predictions are the arg-max class; no decision threshold.",
            "- The checkpoint with the best validation top-1 was kept; the test split was scored once, on that model.",
            "- Variation: 95% Wilson score intervals from the number of test images; one training run and seed, so "
            "the spread across seeds was not measured.",
        ],
        "Evaluation Data": [
            f"- The test split of `{eval_data}` ({sizes.get('test', 'n/a')} images), resized and center-cropped to "
            f"{meta.get('test_resolution')} px as under Model Details; validation: {sizes.get('val', 'n/a')} images.",
            "- Why: the held-out split of the training dataset; it measures in-distribution accuracy only. "
            + (f"[datasheet]({ctx.datasheets[eval_data]})" if eval_data in ctx.datasheets else ""),
        ],
        "Training Data": [
            f"- The training split of {notes['title']}: {sizes.get('train', 'n/a')} images"
            f"{' (limited to %s)' % recipe['train_limit'] if recipe.get('train_limit') else ''}; {sheet_link}.",
            f"- Augmentation: RandomResizedCrop at {meta.get('train_resolution')} px, RandAugment `{recipe.get('rand_augment')}`, "
            f"mixup {recipe.get('mixup')}, cutmix {recipe.get('cutmix')}, random erasing {recipe.get('random_erasing')}.",
            *_progressive_lines(meta.get("progressive")),
        ],
        "Quantitative Analyses": _quantitative(meta, ctx) + _tasks(meta),
        "Ethical Considerations": [
            f"- {notes['ethics']}",
            "- The model inherits the biases and labelling errors of its training data. It was not assessed for "
            "fairness; do not use it where an error could harm someone.",
        ],
        "Caveats and Recommendations": [
            *([f"- {demo}"] if demo else []),
            *_measured_caveats(meta, ctx),
            "- Preprocess inputs exactly as under Model Details (channels, normalization, resolution, crop); accuracy "
            "depends on it. Re-evaluate on your own data before relying on any number here.",
            f"- Load it: `effzoo.load_checkpoint(\"{'checkpoints/' + zoo['folder'] if zoo else 'path/to/this/folder'}\")`"
            + (f" or `effzoo.create_model(\"{name}\", pretrained=True)`." if zoo else "."),
        ],
    }
    if zoo and zoo.get("reproduce", {}).get("commands"):
        body["Caveats and Recommendations"] += ["", "Reproduce (exact commands):", "", "```bash",
                                                *zoo["reproduce"]["commands"], "```"]
    body["Caveats and Recommendations"] += ["", "Recipe (`config.yaml` of the run):", "", "```yaml",
                                            yaml.safe_dump(dict(recipe), sort_keys=False).rstrip(), "```"]
    fm = yaml.safe_dump(front_matter(meta, ctx), sort_keys=False, default_flow_style=None, width=120).rstrip()
    top1 = m.get("test_top1")
    lines = ["---", fm, "---", "", f"# Model card for {name}", "",
             f"{meta.get('model_name')} trained on `{dataset}`: test top-1 {_pct(top1)} at {meta.get('test_resolution')} px, "
             f"{_num(meta.get('params'))} parameters. Generated by `effzoo card` from `model.json`; do not edit by hand.", ""]
    for section in SECTIONS:
        lines += [f"## {section}", "", *body[section], ""]
    return "\n".join(lines)


def write_model_card(folder: str | os.PathLike, meta: Mapping[str, Any], ctx: CardContext | None = None) -> Path:
    """Write `model_card.md`, its datasheet copy and `factsheet.json` into `folder`, atomically; returns the card."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ctx = ctx or load_context(folder, meta)
    text = render_model_card(meta, ctx)
    sheet = build_factsheet(meta, analysis=ctx.analysis, fixres=ctx.fixres, zoo=ctx.zoo, weights=ctx.weights,
                            datasheet=ctx.datasheets.get(_dataset(meta)))
    fs_text = json.dumps(sheet, indent=2, default=str) + "\n"
    atomic_write(folder / FACTSHEET_NAME, lambda tmp: Path(tmp).write_text(fs_text))
    return atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(text))
