"""Ask a trained model what is in an image: `Predictor`, the workflow under `effzoo predict`.

```python
p = effzoo.Predictor("runs/my-model")             # run folder, .safetensors, .ckpt, zoo name, or model.onnx
[r] = p.predict("photo.jpg")                       # also PIL images, tensors, or a list of any of them
r.top_k                                            # [(index, name, probability), ...], most probable first
for r in p.predict_paths(paths): ...               # many files: a DataLoader with workers, in input order
```

**Preprocessing comes from the checkpoint alone** (its `pretrained_cfg`): the test input size
(`test_input_size`, which FixRes sets, else `input_size`), `crop_pct`, interpolation and mean/std,
through the same `eval_transform` that evaluation uses; files are decoded by `data.images.load_image`,
the function training on an image folder uses (EXIF orientation applied, transparency on white,
16-bit scaled, then 'L' or 'RGB' for the model's channels).

**What `predict` takes**: paths (str or `os.PathLike`), PIL images (converted like a file), and
tensors. A tensor is taken to be a *preprocessed* input, as `predictor.transform(image)` returns
it: float, normalized with the checkpoint's mean/std, channels first (C, H, W) for one image or
(N, C, H, W) for several; it goes to the model unchanged.

**What comes back**: one `Prediction` per image, in input order, with one `HeadPrediction` per
head: a plain classifier has one head, named `"class"`; a multi-task checkpoint has one per task
(classification: top-k with that head's class names; multilabel: the labels whose probability
reaches `threshold`; regression: the value). A file that cannot be read gives a `Prediction`
whose `error` says why and whose `heads` is empty: one bad file among thousands must not lose the
others' results.

**Runtimes**: `runtime="torch"` runs the checkpoint (batch norm folded into the convolutions,
channels_last: `optimize_for_inference`) on `device`; `runtime="onnxruntime"` runs an exported
`.onnx` file (any file with `model.json` beside it, which carries the class names and
preprocessing the ONNX file lacks), or exports the checkpoint in memory first, through
`export.onnx.OnnxRuntimeModel`, on the CPU. By default an `.onnx` checkpoint runs in ONNX Runtime
and anything else in torch.

The files around it (INPUT expansion, JSON Lines / CSV rows) are in `predict_files.py`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..artifacts.weights import MODEL_META, load_checkpoint, metadata_path
from ..data.images import load_image, to_model_mode
from ..data.modules import check_int, default_num_workers
from ..data.transforms import eval_transform
from ..models.config import ModelConfig
from ..models.multitask import MultiTaskModel
from ..tasks import parse_tasks
from ..wording import setting
from .evaluate import resolve_device
from .image_batches import ImageBatch, ImageFiles, collate, read_image
from .inference import optimize_for_inference
from .progress import progress as report_progress

SINGLE_HEAD = "class"  # the one head of a plain classifier
RUNTIMES = ("torch", "onnxruntime")
# An image whose short side is below this fraction of the model's input is enlarged more than 2x
# by the resize: its prediction rests on interpolated pixels, which is worth one warning.
SMALL_IMAGE_FRACTION = 0.5
ROTATION_NAMES = ("0°", "90°", "180°", "270°")  # the `rotation` task's labels: quarter turns


class PredictWarning(UserWarning):
    """Something about the inputs or the checkpoint a user should hear once (the CLI prints it as one line)."""


# -- results ------------------------------------------------------------------------------------
Ranked = tuple[int, "str | None", float]  # (class index, class name or None, probability)


@dataclass
class HeadPrediction:
    """One head's answer. classification: `top_k`, most probable first; multilabel: `labels` at or above
    the threshold, most probable first; regression: `value` (a float, or a list for several outputs)."""

    kind: str
    top_k: list[Ranked] = field(default_factory=list)
    labels: list[Ranked] = field(default_factory=list)
    value: float | list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "regression":
            return {"kind": self.kind, "value": self.value}
        ranked = self.top_k if self.kind == "classification" else self.labels
        key = "top_k" if self.kind == "classification" else "labels"
        return {"kind": self.kind, key: [{"index": i, "name": n, "probability": p} for i, n, p in ranked]}


@dataclass
class Prediction:
    """The answer for one image: `path` (None for an in-memory image), its position `index` in the input,
    the image's `size` (width, height) before preprocessing, one `HeadPrediction` per head, or `error`."""

    index: int
    path: str | None = None
    heads: dict[str, HeadPrediction] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    error: str | None = None

    @property
    def source(self) -> str:
        """How to name the image to a person: its path, else `image N`."""
        return self.path if self.path is not None else f"image {self.index}"

    @property
    def top_k(self) -> list[Ranked]:
        """The first (main) head's top-k: for a plain classifier, *the* answer."""
        return next(iter(self.heads.values())).top_k if self.heads else []

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines row: a plain classifier's `top_k` at the top level, a multi-task model's under `heads`."""
        row: dict[str, Any] = {"path": self.path, "index": self.index}
        if self.error is not None:
            row["error"] = self.error
            return row
        row["size"] = list(self.size) if self.size else None
        if list(self.heads) == [SINGLE_HEAD]:
            row["top_k"] = self.heads[SINGLE_HEAD].to_dict()["top_k"]
        else:
            row["heads"] = {name: head.to_dict() for name, head in self.heads.items()}
        return row


@dataclass(frozen=True)
class Head:
    """What the checkpoint says about one output: its name, kind, width and class names (None: unknown)."""

    name: str
    kind: str
    num_outputs: int
    names: tuple[str, ...] | None


# -- the predictor ------------------------------------------------------------------------------
class Predictor:
    """A trained model with the preprocessing it was trained with, answering for files, PIL images and tensors.

    `checkpoint`: a run folder, `model.safetensors` (+ `model.json`), a Lightning `.ckpt`, a shipped
    zoo name (sha256-checked), or an exported `.onnx` file with `model.json` beside it. `device`:
    "auto" (a CUDA GPU when visible), "cpu", "cuda", "cuda:N" (torch runtime; ONNX Runtime runs on the
    CPU). `runtime`: "torch" or "onnxruntime" (default: onnxruntime for an `.onnx` file, else torch).
    `top_k` classes per classification head; `threshold` for multilabel heads. `batch_size` and
    `num_workers` size the DataLoader of `predict_paths` (default workers: `default_num_workers()`).
    `optimize=False` runs the torch model as loaded instead of the BN-folded, channels_last copy
    (outputs agree within 1e-4 relative; the copy is faster).
    """

    def __init__(self, checkpoint: str | os.PathLike, *, device: str = "auto", runtime: str | None = None,
                 top_k: int = 5, batch_size: int = 64, num_workers: int | None = None, threshold: float = 0.5,
                 optimize: bool = True) -> None:
        check_int("top_k", top_k, 1)
        check_int("batch_size", batch_size, 1)
        if num_workers is not None:
            check_int("num_workers", num_workers, 0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{setting('threshold')} must be a probability in [0, 1], got {threshold!r}")
        self.top_k, self.threshold, self.batch_size = top_k, float(threshold), batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.checkpoint = str(checkpoint)
        self.runtime = _choose_runtime(checkpoint, runtime)
        if self.runtime == "onnxruntime":
            if device not in ("auto", "cpu"):
                raise ValueError(f"ONNX Runtime runs the model on the CPU here, not on {device!r}: "
                                 f"use {setting('device', 'cpu')}, or {setting('runtime', 'torch')} for a GPU")
            self.device = torch.device("cpu")
        else:
            self.device = resolve_device(device)  # before loading: a wrong device fails at once
        self.model, self.cfg, tasks = self._load(checkpoint, optimize)
        self.channels, self.image_size = _input_shape(self.cfg)
        self._check_stats()
        self.transform = eval_transform(self.image_size, self.cfg["crop_pct"], self.cfg["interpolation"],
                                        self.cfg["mean"], self.cfg["std"])
        self.heads = _heads(self.cfg, tasks)
        self._warned_small = False
        unnamed = [h.name for h in self.heads if h.kind != "regression" and h.names is None]
        if unnamed:
            which = "" if unnamed == [SINGLE_HEAD] else f" for head(s) {', '.join(unnamed)}"
            _warn(f"{self.checkpoint} records no class names{which}: predictions show class indices")

    # -- loading --------------------------------------------------------------------------------
    def _load(self, checkpoint: str | os.PathLike, optimize: bool) -> tuple[Any, ModelConfig, list | None]:
        if Path(checkpoint).suffix == ".onnx":
            return _load_onnx(Path(checkpoint))
        model = load_checkpoint(checkpoint).to(self.device).eval()
        cfg = model.pretrained_cfg
        tasks = list(model.tasks) if isinstance(model, MultiTaskModel) else None
        if self.runtime == "onnxruntime":
            if tasks:
                raise ValueError(f"{checkpoint} is a multi-task checkpoint: ONNX Runtime runs single-head "
                                 f"models here; use {setting('runtime', 'torch')}")
            from ..export.onnx import OnnxRuntimeModel  # deferred: needs onnx, only for this runtime

            _, size = _input_shape(cfg)
            return OnnxRuntimeModel.from_model(model, size), cfg, None
        if optimize:
            model = _optimized(model)
        return model, cfg, tasks

    def _check_stats(self) -> None:
        mean, std = self.cfg["mean"], self.cfg["std"]
        if len(mean) != self.channels or len(std) != self.channels:
            raise ValueError(f"{self.checkpoint}: its preprocessing has {len(mean)} mean / {len(std)} std values "
                             f"for a {self.channels}-channel model; the checkpoint's model.json is inconsistent")

    # -- predicting -----------------------------------------------------------------------------
    def predict(self, images: Any) -> list[Prediction]:
        """Predictions for `images`: one path, PIL image or tensor, or a list of them (see the module docstring).

        A list of paths goes through `predict_paths` (a DataLoader with workers); anything else is
        preprocessed here. Always returns a list, one `Prediction` per image, in input order.
        """
        items = _as_list(images)
        if items and all(isinstance(i, (str, os.PathLike)) for i in items):
            return list(self.predict_paths([os.fspath(i) for i in items]))
        entries = [(index, *entry) for index, entry in enumerate(e for item in items for e in self._prepare(item))]
        out: list[Prediction] = []
        for start in range(0, len(entries), self.batch_size):
            out += self._answer(collate(entries[start:start + self.batch_size]))
        return out

    def predict_paths(self, paths: Sequence[str | os.PathLike], *, progress: str | None = None) -> Iterator[Prediction]:
        """One `Prediction` per path, in order, yielded batch by batch as the model gets through them."""
        for batch in self.predict_batches(paths, progress=progress):
            yield from batch

    def predict_batches(self, paths: Sequence[str | os.PathLike], *,
                        progress: str | None = None) -> Iterator[list[Prediction]]:
        """The predictions of each DataLoader batch as it completes (what streaming writers consume).

        Files are decoded and preprocessed by `num_workers` worker processes; `progress` labels a
        progress report on stderr (None: quiet).
        """
        files = [os.fspath(p) for p in paths]
        dataset = ImageFiles(files, self.channels, self.transform)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda", collate_fn=collate)
        for chunk in report_progress(loader, len(loader), progress, count=len):
            yield self._answer(chunk)

    def preprocess(self, image: str | os.PathLike | Image.Image) -> torch.Tensor:
        """The (C, H, W) tensor the model gets for a file or PIL image: what `predict` feeds it."""
        img = load_image(image, self.channels) if isinstance(image, (str, os.PathLike)) \
            else to_model_mode(image, self.channels)
        return self.transform(img)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs per head (logits or values, float32 on the CPU) for a preprocessed batch (N, C, H, W)."""
        if self.runtime == "onnxruntime":
            out: Any = self.model(x)
        else:
            out = self.model(x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last))
        if isinstance(out, torch.Tensor):
            out = {SINGLE_HEAD: out}
        return {name: value.float().cpu() for name, value in out.items()}

    # -- internals ------------------------------------------------------------------------------
    def _prepare(self, item: Any) -> list[tuple[str | None, torch.Tensor | None, tuple[int, int] | None, str | None]]:
        """(path, tensor, size, error) for each image in one item of `predict`'s input."""
        if isinstance(item, torch.Tensor):
            return [(None, x, None, None) for x in self._check_tensor(item)]
        if isinstance(item, Image.Image):
            img = to_model_mode(item, self.channels)
            return [(None, self.transform(img), img.size, None)]
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            x, size, error = read_image(path, self.channels, self.transform)
            return [(path, x, size, error)]
        raise TypeError(f"cannot predict on a {type(item).__name__}: pass paths, PIL images or preprocessed tensors")

    def _check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.unsqueeze(0) if x.ndim == 3 else x
        if batch.ndim != 4 or batch.shape[1] != self.channels or not batch.is_floating_point():
            raise ValueError(
                f"a tensor input is a preprocessed image: float (C, H, W) or (N, C, H, W) with C = {self.channels} "
                f"(normalized, as predictor.transform(image) returns it); got {x.dtype} {tuple(x.shape)}. "
                "Pass a PIL image or a path to have it preprocessed")
        return batch

    def _answer(self, batch: ImageBatch) -> list[Prediction]:
        """Predictions for one batch; an unreadable image keeps its error (the batch's tensor holds the others)."""
        results = [Prediction(index=i, path=p, size=s, error=e)
                   for i, p, s, e in zip(batch.indices, batch.paths, batch.sizes, batch.errors)]
        good = [r for r in results if r.error is None]
        if good and batch.x is not None:
            self._warn_if_small(good)
            outputs = self.forward(batch.x)
            for row, r in enumerate(good):
                r.heads = {h.name: self._head(h, outputs[h.name][row]) for h in self.heads}
        return results

    def _head(self, head: Head, raw: torch.Tensor) -> HeadPrediction:
        if head.kind == "regression":
            values = raw.tolist()
            return HeadPrediction("regression", value=values[0] if len(values) == 1 else values)
        if head.kind == "multilabel":
            probs = raw.sigmoid()
            order = [i for i in probs.argsort(descending=True).tolist() if probs[i] >= self.threshold]
            return HeadPrediction("multilabel", labels=[_ranked(i, probs, head.names) for i in order])
        probs = raw.softmax(-1)
        top = probs.topk(min(self.top_k, head.num_outputs)).indices.tolist()
        return HeadPrediction("classification", top_k=[_ranked(i, probs, head.names) for i in top])

    def _warn_if_small(self, results: Sequence[Prediction]) -> None:
        if self._warned_small:
            return
        for r in results:
            if r.size is not None and min(r.size) < SMALL_IMAGE_FRACTION * self.image_size:
                self._warned_small = True
                _warn(f"{r.source} is {r.size[0]}x{r.size[1]} px, far smaller than the model's {self.image_size} px "
                      f"input: it is enlarged {self.image_size / min(r.size):.1f}x and its prediction rests on "
                      "interpolated pixels (said once; other images may be small too)")
                return


# -- the checkpoint -----------------------------------------------------------------------------
def _choose_runtime(checkpoint: str | os.PathLike, runtime: str | None) -> str:
    onnx_file = Path(checkpoint).suffix == ".onnx"
    if runtime is None:
        return "onnxruntime" if onnx_file else "torch"
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown {setting('runtime')} {runtime!r}: choose {' or '.join(RUNTIMES)}")
    if onnx_file and runtime == "torch":
        raise ValueError(f"{checkpoint} is an ONNX file, which runs in ONNX Runtime "
                         f"({setting('runtime', 'onnxruntime')}); for torch pass the run folder or model.safetensors")
    return runtime


def _load_onnx(path: Path) -> tuple[Any, ModelConfig, list | None]:
    """An exported ONNX file (float or quantized) and the metadata of `model.json` beside it."""
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path} (write one with `effzoo export --format onnx`)")
    meta_path = metadata_path(path)
    if meta_path is None:
        raise FileNotFoundError(
            f"{path} has no {MODEL_META} beside it: the ONNX file holds the network, {MODEL_META} its class names "
            f"and preprocessing. Copy the run's {MODEL_META} next to it, or pass the run folder instead")
    try:
        meta = json.loads(meta_path.read_text())
        cfg = ModelConfig.from_dict(meta["pretrained_cfg"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{meta_path} is not effzoo model metadata (need pretrained_cfg): {e}") from None
    if meta.get("multitask"):
        raise ValueError(f"{meta_path} describes a multi-task model: ONNX Runtime runs single-head models here; "
                         f"predict from the run folder with {setting('runtime', 'torch')}")
    from ..export.onnx import OnnxRuntimeModel  # deferred: needs onnxruntime, only for this runtime

    runner = OnnxRuntimeModel(path)
    shape = runner.session.get_inputs()[0].shape  # e.g. ["batch", 1, 28, 28]: the exported resolution
    if len(shape) == 4 and all(isinstance(s, int) for s in shape[1:]):
        if shape[1] != cfg["input_size"][0]:
            raise ValueError(f"{path} takes {shape[1]}-channel images but {meta_path} describes "
                             f"{cfg['input_size'][0]} channels; is {MODEL_META} from another run?")
        cfg["test_input_size"] = tuple(shape[1:])  # the file computes at the size it was exported at
    width = runner.session.get_outputs()[0].shape[-1]
    classes = len(cfg.get("class_names") or []) or cfg["num_classes"]
    if isinstance(width, int) and width != classes:
        raise ValueError(f"{path} has {width} outputs but {meta_path} describes {classes} classes; "
                         f"is {MODEL_META} from another run?")
    return runner, cfg, None


def _optimized(model: nn.Module) -> nn.Module:
    """BN folded into the convolutions, channels_last; a multi-task model gets its backbone optimized."""
    if isinstance(model, MultiTaskModel):
        import copy

        fast = copy.deepcopy(model)
        fast.backbone = optimize_for_inference(model.backbone)
        return fast.eval()
    return optimize_for_inference(model)


def _input_shape(cfg: ModelConfig) -> tuple[int, int]:
    """(channels, side) the model is fed: the test input size when set, else the training input size."""
    size = cfg.get("test_input_size") or cfg.get("input_size")
    if not size or len(size) != 3:
        raise ValueError(f"the checkpoint records no input size (pretrained_cfg input_size); got {size!r}")
    return int(size[0]), int(size[-1])


def _heads(cfg: ModelConfig, tasks: list | None) -> list[Head]:
    names = cfg.get("class_names") or None
    if not tasks:
        count = len(names) if names else int(cfg["num_classes"])
        return [Head(SINGLE_HEAD, "classification", count, tuple(names) if names else None)]
    from ..mtl.labels import FASHION_MNIST_COARSE_NAMES  # the names of the built-in coarse task

    heads = []
    for t in parse_tasks(tasks):
        # the head's own names (a labels.csv column), else those a built-in label source implies
        known = getattr(t, "class_names", None) or {"coarse": FASHION_MNIST_COARSE_NAMES,
                                                    "rotation": ROTATION_NAMES}.get(t.source)
        # the dataset's classes name a classification head trained on the dataset's own labels
        if known is None and t.kind == "classification" and t.source == "label" and names and len(names) == t.num_outputs:
            known = names
        heads.append(Head(t.name, t.kind, t.num_outputs, tuple(known) if known else None))
    return heads


# -- small helpers ------------------------------------------------------------------------------
def _ranked(i: int, probs: torch.Tensor, names: tuple[str, ...] | None) -> Ranked:
    return i, (names[i] if names is not None else None), float(probs[i])


def _as_list(images: Any) -> list[Any]:
    if isinstance(images, (str, os.PathLike, Image.Image, torch.Tensor)):
        return [images]
    return list(images)


def _warn(message: str) -> None:
    warnings.warn(message, PredictWarning, stacklevel=3)

