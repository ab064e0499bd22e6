"""Export a model to ONNX or TorchScript, and prove the file computes what the eager model computes.

What is exported is the inference-optimized copy (`optimize_for_inference`: batch norm folded
into the convolutions), so the file has no BatchNorm nodes. The batch axis is dynamic. The file
is written atomically (never half-written), then loaded back and run on a batch of another size
(onnxruntime for ONNX where installed, `torch.jit.load` for TorchScript); outputs must match the
eager model within 1e-4 relative, or the file is removed and an error raised.

The preprocessing the model expects (input size, mean, std, crop_pct, interpolation) and the
registry name + arguments travel inside the file: ONNX `metadata_props["effzoo"]`, TorchScript
extra file `effzoo.json`.

ONNX export uses torch's `torch.export`-based exporter (the default since torch 2.9), which
needs the `onnx` and `onnxscript` packages; checking needs `onnxruntime`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..artifacts.atomic import atomic_write
from ..evaluation.inference import optimize_for_inference
from ..models.base import check_positive_int
from ..version import __version__
from .formats import FORMATS

METADATA_KEY = "effzoo"


def export_model(model: nn.Module, fmt: str, path: str | Path, input_size: int | Sequence[int] | None = None, *,
                 check: bool = True, batch_size: int = 2, opset: int | None = None, rtol: float = 1e-4) -> dict[str, Any]:
    """Write `model` (BN folded) as `fmt` ("onnx" or "torchscript") to `path`; check it against eager; return a report.

    `input_size` is (C, H, W), or one int for a square image with the model's channels; by
    default the model's test input size. The report holds the path, size in bytes, the
    runtime the check used (`checked_with`, None when onnxruntime is missing), the largest
    absolute difference from eager and that difference relative to the output scale (`max_rel_diff`,
    checked against `rtol`).
    """
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    size = _input_size(model, input_size)
    if fmt == "onnx":
        _require("onnx", "onnxscript")
    param = next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(batch_size, *size, generator=gen).to(param.device, param.dtype)
    meta = json.dumps(_metadata(model, size))

    start = time.perf_counter()
    # ONNX runtimes choose their own layouts; channels_last only helps TorchScript run in torch.
    fast = optimize_for_inference(model, compile=False, channels_last=(fmt == "torchscript"))
    if fmt == "onnx":
        batch = torch.export.Dim("batch", min=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(fast, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                        input_names=["input"], output_names=["logits"], opset_version=opset,
                                        verbose=False)
        program.model.metadata_props[METADATA_KEY] = meta
        atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
    else:
        with warnings.catch_warnings():
            # Tracing is what we want here: the only Python branch is the input-channel check, a constant.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            traced = torch.jit.trace(fast, example, check_trace=False)
            atomic_write(path, lambda tmp: torch.jit.save(traced, tmp, _extra_files={f"{METADATA_KEY}.json": meta}))
    seconds = time.perf_counter() - start

    report: dict[str, Any] = {"path": str(path), "format": fmt, "input_size": list(size), "dynamic_batch": True,
                              "bytes": path.stat().st_size, "export_s": seconds, "checked_with": None}
    if check:
        try:
            report.update(check_export(model, path, fmt, size, batch_size=batch_size + 1, rtol=rtol))
        except Exception:
            path.unlink(missing_ok=True)  # a file that computes something else must not be left behind
            raise
    return report


@torch.no_grad()
def check_export(model: nn.Module, path: str | Path, fmt: str, input_size: Sequence[int], *, batch_size: int = 3,
                 rtol: float = 1e-4) -> dict[str, Any]:
    """Run the exported file on a random batch and compare with the eager model (a copy, in eval mode)."""
    ref_model = copy.deepcopy(model).eval()
    param = next(ref_model.parameters())
    x = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(1)).to(param.device, param.dtype)
    want = ref_model(x).float().cpu()
    if fmt == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            warnings.warn("onnxruntime is not installed: the ONNX file was written but not checked "
                          "(pip install onnxruntime)", stacklevel=2)
            return {"checked_with": None}
        runner = OnnxRuntimeModel(path)
        got = runner(x).float()
        runtime = runner.runtime
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(path), map_location=param.device)
        got = loaded(x.contiguous(memory_format=torch.channels_last)).float().cpu()
        runtime = f"torch.jit {torch.__version__}"
    if got.shape != want.shape:
        raise RuntimeError(f"exported {fmt} model returned shape {tuple(got.shape)} for a batch of {batch_size}, "
                           f"eager returns {tuple(want.shape)}")
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    if not diff <= rtol * scale + 1e-6:
        raise RuntimeError(f"exported {fmt} model disagrees with eager: max abs difference {diff:.3g} at output "
                           f"scale {scale:.3g} (allowed {rtol:g} relative)")
    # The check is relative to the logits' scale, so report it that way: an absolute 5e-2 on logits of 500 is fine.
    return {"checked_with": runtime, "check_batch_size": batch_size, "max_abs_diff": diff, "output_scale": scale,
            "max_rel_diff": diff / scale if scale > 0 else diff, "rtol": rtol}


class OnnxRuntimeModel:
    """An exported ONNX file run by ONNX Runtime on the CPU, called like the eager model (tensor in, logits out).

    Why a second runtime: on a small CPU, ONNX Runtime's kernels (depthwise convolutions and
    activations fused into the convolutions) run EfficientNet several times faster than torch's
    eager mode, where `torch.compile` gains far less (see `benchmarks/inference.py`). The file is
    what `export_model(..., "onnx")` writes: batch norm already folded, dynamic batch, checked
    against eager. `threads` sets the session's intra-op threads (default: torch's thread count,
    so a comparison with torch uses the same cores). Inputs are NCHW float32; outputs come back
    as CPU tensors.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path} (write one with `effzoo export --format onnx`)")
        _require("onnxruntime", purpose="running an ONNX model")
        import onnxruntime as ort

        if threads is not None:
            check_positive_int("threads", threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"ONNX Runtime cannot load {path}: {err}") from err
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.threads = options.intra_op_num_threads
        self.runtime = f"onnxruntime {ort.__version__}"

    @classmethod
    def from_model(cls, model: nn.Module, input_size: int | Sequence[int] | None = None,
                   threads: int | None = None) -> "OnnxRuntimeModel":
        """`model` exported by `export_model` (BN folded, checked against eager) and loaded, without leaving a file.

        The session holds the whole graph in memory once created, so the temporary file goes at once.
        """
        with tempfile.TemporaryDirectory(prefix="effzoo-onnx-") as folder:
            path = Path(folder) / "model.onnx"
            export_model(model, "onnx", path, input_size)
            return cls(path, threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # ONNX Runtime reads NCHW float32 numpy arrays; a channels_last tensor is made contiguous first.
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The effzoo metadata stored in an exported file (preprocessing, model name and arguments)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if path.suffix == ".onnx":
        _require("onnx")
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props.get(METADATA_KEY, "{}"))
    files = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[f"{METADATA_KEY}.json"] or "{}")


def _input_size(model: nn.Module, input_size: int | Sequence[int] | None) -> tuple[int, int, int]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    chans = int(getattr(model, "in_chans", (cfg.get("input_size") or (3,))[0]))
    if input_size is None:
        size = cfg.get("test_input_size") or cfg.get("input_size")
        if size is None:
            raise ValueError("the model has no pretrained_cfg input size; pass input_size=(C, H, W) or a resolution")
        size = tuple(int(s) for s in size)
    elif isinstance(input_size, int) and not isinstance(input_size, bool):
        size = (chans, input_size, input_size)
    else:
        size = tuple(int(s) for s in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input size must be (C, H, W) with positive sides or one resolution, got {input_size!r}")
    if size[0] != chans:
        raise ValueError(f"input size {size} has {size[0]} channels but the model takes {chans}")
    stride = int(getattr(model, "total_stride", 1) or 1)
    if min(size[1:]) < stride:
        raise ValueError(f"resolution {size[1:]} is smaller than the model's total stride {stride}")
    return size  # type: ignore[return-value]


def _metadata(model: nn.Module, size: Sequence[int]) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    keys = ("model_name", "model_args", "mean", "std", "crop_pct", "interpolation", "num_classes")
    out = {k: cfg[k] for k in keys if k in cfg}
    out.update(input_size=list(size), input_name="input", output_name="logits", layout="NCHW", dynamic_batch=True)
    out["effzoo_version"] = __version__
    return json.loads(json.dumps(out, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _require(*modules: str, purpose: str = "ONNX export") -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"{purpose} needs {', '.join(missing)}: pip install onnx onnxscript onnxruntime "
                         f"(or pip install 'effzoo[dev]')")

