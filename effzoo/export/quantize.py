"""int8 deployment: static quantization of an exported float ONNX model, kept only if it stays accurate.

`export_int8(model, path, datamodule)` exports the float model (`export_model`, checked against eager),
quantizes it with calibration images from the data's training split, scores float and int8 on the
validation split, and writes `model.int8.onnx` only when top-1 drops by at most `max_drop` points
(or when forced). Everything is made in a temporary folder first: a refused or failed export leaves
nothing behind. The accuracy check travels inside the int8 file (`metadata_props["effzoo"]["quantization"]`)
and in its `<name>.int8.json` beside it, which is the run's `model.json` plus that block, so `predict`
and `benchmark` read the preprocessing and class names from it.

The recipe (ONNX Runtime's `quantize_static`). Each choice was measured on EfficientNet-B0 at 224 px,
batch 16, 2 threads, on this repository's AVX2 CPU (no VNNI) while other jobs loaded it, so the
numbers are images/s relative to the float file in the same interleaved run:

* All of it together: 1.5-1.6x the float file (1.52x on 1 thread, 1.51x on 2).
* QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into QLinearConv and
  friends, in NHWC at the ALL optimization level; 1.01x at EXTENDED): as fast as QOperator (1.56x
  vs 1.58x) and the format ONNX Runtime recommends.
* Everything quantized, SiLU's Sigmoid and Mul and the squeeze-excitation gate included. Kept float,
  each costs a dequantize/quantize pass per activation map: SiLU float 0.84x, the gate float 1.19x,
  both 0.78x; depthwise convolutions float 1.41x.
* The squeeze-excitation means (ReduceMean over H, W) rewritten as GlobalAveragePool first: ORT
  quantizes that op (QLinearGlobalAveragePool on the uint8 map) but not ReduceMean, which forced a
  float copy of every expanded activation map; the rewrite took int8 from 1.35x to 1.56x.
* uint8 activations (asymmetric, MinMax ranges), int8 weights per output channel (symmetric):
  int8 activations ran at 0.40x (no fast s8 x s8 path on AVX2). Per-tensor weights: no faster.
* 7-bit weights (`reduce_range`): AVX2's u8 x s8 multiply-add (vpmaddubsw) can saturate its 16-bit
  sums with full 8-bit weights; 7 bits cannot, and cost no speed. On the shipped Fashion-MNIST model
  (test split) full 8-bit weights lost 0.9 points of top-1, 7-bit ones 0.26 (93.43% -> 93.17%).

What is left is element-wise: SiLU (a sigmoid lookup, then a multiply) takes a third of the int8
time, and ONNX Runtime has no single quantized SiLU.

PyTorch's PT2E path (torchao's X86InductorQuantizer, compiled by inductor) ran at 0.38x the float
ONNX file here, after 171 s of compilation, and gives no file ONNX Runtime can load: not used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..artifacts.atomic import atomic_write
from ..artifacts.weights import MODEL_WEIGHTS, metadata_path
from ..data import stratified_subset
from ..evaluation.evaluate import check_data_matches, datamodule_for, recorded_data
from ..models.base import check_positive_int
from ..models.multitask import MultiTaskModel
from ..wording import setting
from .onnx import METADATA_KEY, OnnxRuntimeModel, export_model

INT8_SUFFIX = ".int8.onnx"
DEFAULT_CALIBRATION_IMAGES = 256
DEFAULT_MAX_DROP = 1.0  # top-1 points on the validation split
RECIPE = {"format": "QDQ", "weights": "int8 (7-bit range), per output channel, symmetric", "reduce_range": True,
          "activations": "uint8, per tensor, asymmetric", "calibration_method": "MinMax",
          "quantized_ops": "all (convolutions, SiLU/sigmoid, squeeze-excitation, pooling, residual adds, classifier)",
          "graph_rewrites": ["ReduceMean over H,W -> GlobalAveragePool"]}


def int8_path(float_path: str | Path) -> Path:
    """Where the int8 file of a float export goes: `model.onnx` -> `model.int8.onnx`, beside it."""
    path = Path(float_path)
    return path.with_name(path.name.removesuffix(".onnx") + INT8_SUFFIX)


def sidecar_path(onnx_path: str | Path) -> Path:
    """The metadata file read beside an ONNX file: `model.int8.onnx` -> `model.int8.json`."""
    return Path(onnx_path).with_suffix(".json")


# -- the graph --------------------------------------------------------------------------------
def spatial_means_to_pools(model: Any) -> int:
    """Rewrite every ReduceMean over the two spatial axes of a 4-D map as GlobalAveragePool, in place.

    The same numbers (a mean over H and W), but an op ONNX Runtime quantizes: the squeeze-excitation
    pooling then reads the uint8 map instead of a float copy of it. A mean without kept dimensions
    (the classifier's pooling) becomes GlobalAveragePool + Flatten. Returns how many were rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    rewritten = 0
    for index in range(len(graph.node) - 1, -1, -1):  # backwards: inserting nodes does not shift what is left to visit
        node = graph.node[index]
        if node.op_type != "ReduceMean" or not _over_spatial_axes(node, constants):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        keep = attrs.get("keepdims", 1) == 1
        pooled = node.output[0] if keep else node.output[0] + "_pooled"
        replacement = [helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=node.name + "_pool")]
        if not keep:
            replacement.append(helper.make_node("Flatten", [pooled], [node.output[0]], name=node.name + "_flatten", axis=1))
        del graph.node[index]
        for offset, new in enumerate(replacement):
            graph.node.insert(index + offset, new)
        rewritten += 1
    _drop_unused_constants(graph)
    return rewritten


def _drop_unused_constants(graph: Any) -> None:
    """Remove initializers and Constant nodes nothing reads any more (the rewritten means' axes)."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)


def _over_spatial_axes(node: Any, constants: Mapping[str, np.ndarray]) -> bool:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:  # opset 18+: axes is an input
        axes = constants.get(node.input[1])
    if axes is None:
        return False
    # Axes may be negative (-2, -1); the exporter's maps are 4-D NCHW, so 2 and 3 are H and W.
    return sorted(int(a) % 4 for a in np.asarray(axes).ravel()) == [2, 3]


def quantize_onnx(float_path: str | Path, output: str | Path, calibration: Sequence[np.ndarray], *,
                  reduce_range: bool = True, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Quantize the float ONNX file at `float_path` to int8 at `output` (written atomically) with ONNX Runtime.

    `calibration`: NCHW float32 batches, preprocessed as the model expects. The effzoo metadata of the
    float file is carried over, with a `quantization` entry (the recipe, plus `extra`). Returns the recipe.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if not calibration:
        raise ValueError("no calibration images: int8 quantization needs a few hundred images to measure ranges on")
    model = onnx.load(str(float_path))
    rewrites = spatial_means_to_pools(model)
    input_name = model.graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._it = iter(calibration)

    recipe = {**RECIPE, "reduce_range": reduce_range, "rewritten_means": rewrites, **dict(extra or {})}
    if not reduce_range:
        recipe["weights"] = "int8, per output channel, symmetric"
    with tempfile.TemporaryDirectory(prefix="effzoo-int8-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        onnx.save(model, str(prepared))
        with _quiet():
            quantize_static(
                str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        result = onnx.load(str(quantized))
        _set_metadata(result, {**_read_metadata(model), "quantization": recipe})
        atomic_write(output, lambda tmp: onnx.save(result, tmp))
    return recipe


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantizer's advice (logged at WARNING on the root logger) to run ORT's pre-processing:
    it does shape inference and graph optimization, which the exported, BN-folded graph does not need."""
    before = logging.root.manager.disable  # whatever level the caller had disabled, restored after
    logging.disable(max(before, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def _read_metadata(model: Any) -> dict[str, Any]:
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props.get(METADATA_KEY, "{}"))


def _set_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)


# -- the data ---------------------------------------------------------------------------------
def calibration_batches(datamodule: Any, resolution: int, images: int = DEFAULT_CALIBRATION_IMAGES, *,
                        batch_size: int = 16, seed: int = 0) -> list[np.ndarray]:
    """`images` training images, class-balanced and seeded, with the evaluation preprocessing at `resolution`.

    The eval transform (resize, center crop, normalize), not the training augmentation: the ranges
    must be those the deployed model meets.
    """
    check_positive_int(setting("calibration_images"), images)
    loader = datamodule.eval_dataloader("train", resolution)
    keep = stratified_subset(datamodule.split_labels("train"), images, seed)
    subset = DataLoader(Subset(loader.dataset, keep.tolist()), batch_size=batch_size, shuffle=False,
                        num_workers=loader.num_workers)
    return [x.float().contiguous().numpy() for x, _ in subset]


@torch.no_grad()
def onnx_logits(runner: Any, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of an ONNX Runtime model (`OnnxRuntimeModel`) over a loader of (images, labels), and the labels."""
    logits, targets = [], []
    for x, y in loader:
        logits.append(runner(x).float())
        targets.append(y)
    return torch.cat(logits), torch.cat(targets)


def compare_top1(float_path: str | Path, int8_file: str | Path, loader: Iterable) -> dict[str, Any]:
    """Top-1 of the float and the int8 file on the same images, their difference and top-1 agreement.

    The class is the first arg-max: int8 logits are quantized, so exact ties are common, and each
    rule must break them the same way for the numbers to be reproducible from the files.
    """
    want, targets = onnx_logits(OnnxRuntimeModel(float_path), loader)
    got, _ = onnx_logits(OnnxRuntimeModel(int8_file), loader)
    if len(targets) == 0:
        raise ValueError("no validation images to check the int8 model on")
    f_pred, q_pred = want.argmax(1), got.argmax(1)
    f_top1 = 100.0 * f_pred.eq(targets).float().mean().item()
    q_top1 = 100.0 * q_pred.eq(targets).float().mean().item()
    return {"images": int(len(targets)), "float_top1": f_top1, "int8_top1": q_top1, "drop": f_top1 - q_top1,
            "agreement": 100.0 * q_pred.eq(f_pred).float().mean().item()}


# -- the whole export -------------------------------------------------------------------------
def export_int8(model: nn.Module, output: str | Path, datamodule: Any, *, resolution: int | None = None,
                calibration_images: int = DEFAULT_CALIBRATION_IMAGES, max_drop: float = DEFAULT_MAX_DROP,
                force: bool = False, meta: Mapping[str, Any] | None = None, data_label: str | None = None,
                seed: int = 0) -> dict[str, Any]:
    """Export `model` to float ONNX at `output` and to int8 beside it (`int8_path(output)`), with the accuracy check.

    Calibration: `calibration_images` images of the training split of `datamodule` (the model's data,
    preprocessed as the model expects: `calibration_datamodule`). Check: top-1 of both files on its
    validation split; when int8 loses more than `max_drop` points a ValueError is raised and nothing is
    written, unless `force`. `resolution`: default the model's test size. `meta`: the run's `model.json`,
    written with the check as the int8 file's sidecar (`sidecar_path`). Returns the report.
    """
    if isinstance(model, MultiTaskModel):
        raise ValueError("int8 export takes a single-head classifier; this is a multi-task model (one output per "
                         "head), whose accuracy check would need every head's metric")
    output = Path(output)
    target = int8_path(output)
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not np.isfinite(max_drop):
        raise ValueError(f"{setting('max_drop')} must be a number of top-1 points, got {max_drop!r}")
    check_positive_int(setting("calibration_images"), calibration_images)
    resolution = int(resolution or model.pretrained_cfg["test_input_size"][-1])
    label = data_label or datamodule.name
    start = time.perf_counter()
    batches = calibration_batches(datamodule, resolution, calibration_images, seed=seed)
    with tempfile.TemporaryDirectory(prefix="effzoo-int8-") as work:
        float_tmp, int8_tmp = Path(work) / "model.onnx", Path(work) / "model.int8.onnx"
        report = export_model(model, "onnx", float_tmp, resolution)
        calibration = {"data": label, "split": "train", "images": sum(len(b) for b in batches),
                       "resolution": resolution, "seed": seed, "preprocessing": "evaluation transform"}
        recipe = quantize_onnx(float_tmp, int8_tmp, batches, extra={"calibration": calibration})
        accuracy = compare_top1(float_tmp, int8_tmp, datamodule.eval_dataloader("val", resolution))
        accuracy.update(data=label, split="val", max_drop=float(max_drop), forced=bool(force))
        if accuracy["drop"] > max_drop and not force:
            raise ValueError(
                f"int8 top-1 on the val split of {label} is {accuracy['int8_top1']:.2f}% against "
                f"{accuracy['float_top1']:.2f}% in float: it drops {accuracy['drop']:.2f} points, more than "
                f"{setting('max_drop', float(max_drop))} allows, so nothing was written (more "
                f"{setting('calibration_images')} may help; {setting('force', True)} writes it anyway)")
        quantization = {**recipe, "accuracy": accuracy}
        _stamp(int8_tmp, quantization)  # the file carries its own accuracy check
        report.update(path=str(output), int8_path=str(target), int8_bytes=int8_tmp.stat().st_size,
                      int8_metadata=str(sidecar_path(target)), quantization=quantization,
                      seconds=time.perf_counter() - start)
        sidecar = {**dict(meta or model_metadata(model)), "file": target.name, "quantization": quantization}
        _place(float_tmp, output)
        _place(int8_tmp, target)
        atomic_write(sidecar_path(target), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2) + "\n"))
    return report


def calibration_datamodule(model: nn.Module, checkpoint: str | Path, data: str | None = None, *,
                           data_dir: str | None = None, batch_size: int = 64,
                           num_workers: int | None = None) -> tuple[str, Any]:
    """The data to calibrate and check on: `data`, else the data recorded in `checkpoint` (with that
    run's splits), preprocessed as the model expects. Channels, classes or class names that differ from
    the model's are refused: ranges and accuracy measured on other data say nothing about this model.
    Returns (data label, data module)."""
    recorded = recorded_data(checkpoint, model)
    name = data or recorded.get("data")
    if not name:
        raise ValueError(f"{checkpoint} does not record which data it was trained on: pass "
                         f"{setting('calibration_data')} (digits, fashion-mnist, synthetic or an image folder)")
    same = str(name) == str(recorded.get("data"))  # the training data again: rebuild that run's splits
    dm = datamodule_for(model, str(name), data_dir=data_dir or (recorded.get("data_dir") if same else None),
                        batch_size=batch_size, num_workers=num_workers, check_shape=False,
                        seed=recorded.get("seed", 0) if same else 0,
                        val_fraction=recorded.get("val_fraction") if same else None,
                        **((recorded.get("data_options") or {}) if same else {}))
    label = setting("calibration_data", str(name)) if data else f"the recorded data {name}"
    check_data_matches(model, dm, label=label)
    return str(name), dm


def checkpoint_metadata(checkpoint: str | Path, model: nn.Module) -> dict[str, Any]:
    """The run's `model.json` (beside a .safetensors, or in a run folder), else what the model itself records."""
    path = Path(checkpoint)
    if path.suffix == ".ckpt":  # the folder's model.json may be another epoch's export; the model knows its own
        return model_metadata(model)
    found = metadata_path(path / MODEL_WEIGHTS if path.is_dir() else path)
    return json.loads(found.read_text()) if found else model_metadata(model)


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """What `predict` needs of `model.json` (architecture, preprocessing, class names), for a model that has none."""
    cfg = model.pretrained_cfg.to_dict() if hasattr(model.pretrained_cfg, "to_dict") else dict(model.pretrained_cfg)
    meta = {"model_name": cfg.get("model_name"), "model_args": cfg.get("model_args", {}), "pretrained_cfg": cfg}
    return json.loads(json.dumps(meta, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _stamp(path: Path, quantization: Mapping[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    _set_metadata(model, {**_read_metadata(model), "quantization": dict(quantization)})
    onnx.save(model, str(path))


def _place(source: Path, target: Path) -> None:
    """Copy a finished file to its place atomically (a temp file beside the target, then a rename)."""
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
