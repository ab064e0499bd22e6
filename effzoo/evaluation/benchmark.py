"""`effzoo benchmark`: inference and training throughput of an effzoo model next to timm's model of the same name.

Protocol (one process, one run, so both sides see the same machine load):

* inference: effzoo's inference-optimized copy (BN folded, channels_last, optionally
  `torch.compile`; or, with `runtime="onnxruntime"`, that copy exported to ONNX and run by
  ONNX Runtime) against timm's model as `timm.create_model` gives it (eager, NCHW), both
  under `torch.inference_mode()`;
* training: one SGD step (forward, cross-entropy, backward, update) of effzoo's model in
  channels_last against timm's (eager, NCHW);
* warm-up calls first (a compiled model compiles on its first call; that time is reported
  separately as `compile_s`), then `repeats` rounds in which each contestant runs `iters`
  batches in turn (interleaved), so slow phases of a shared machine hit both;
* per-batch latencies give p50/p90/p99; images/s is batch size / median latency, which a few
  interrupted batches do not move.

Names timm lacks (`efficientnet` + phi, any phi= or multiplier) are benchmarked alone, with a
note saying why there is no comparison.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..models import create_model, model_info
from ..export.onnx import OnnxRuntimeModel, read_metadata
from ..wording import setting
from .bench_options import BENCHES, RUNTIMES, TRAIN_PRECISIONS
from .evaluate import resolve_device
from .inference import optimize_for_inference


def latency_stats(seconds: list[float], batch_size: int) -> dict[str, Any]:
    """Latency percentiles (ms per batch) and images/s (batch / median latency) of per-batch timings."""
    if not seconds:
        raise ValueError("no timings to summarize")
    ordered = sorted(seconds)

    def pct(q: float) -> float:  # linear interpolation between closest ranks
        pos = (len(ordered) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    p50 = pct(0.5)
    return {
        "images_per_s": batch_size / p50 if p50 > 0 else float("inf"),
        "images_per_s_mean": batch_size * len(seconds) / sum(seconds) if sum(seconds) > 0 else float("inf"),
        "latency_ms": {"p50": 1e3 * p50, "p90": 1e3 * pct(0.9), "p95": 1e3 * pct(0.95), "p99": 1e3 * pct(0.99),
                       "mean": 1e3 * sum(seconds) / len(seconds), "min": 1e3 * ordered[0]},
        "batches": len(seconds),
        "batch_size": batch_size,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timm_model(name: str, effzoo_args: dict[str, Any], num_classes: int, in_chans: int) -> tuple[nn.Module | None, str | None]:
    """timm's model of the same name and classes, or None and the reason there is none."""
    changed = sorted(k for k in ("phi", "coefficients", "depth_multiplier", "width_multiplier", "resolution", "small_input")
                     if effzoo_args.get(k) not in (None, False))
    if changed:
        return None, (f"effzoo's {name} with {', '.join(f'{k}={effzoo_args[k]}' for k in changed)} is a different "
                      f"architecture (scaled or small-input); timm has no such model")
    if not timm.is_model(name):
        return None, f"timm has no model named {name!r}"
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans), None


def benchmark(name: str, *, res: int | None = None, batch_size: int = 16, bench: str = "both", compile: bool = False,
              runtime: str = "torch", precision: str = "32-true", phi: float | None = None, num_classes: int = 1000,
              in_chans: int = 3, warmup: int = 2, iters: int = 10,
              repeats: int = 3, compare_timm: bool = True, device: str = "cpu", threads: int | None = None,
              log: Callable[[str], None] | None = None, **model_args: Any) -> dict[str, Any]:
    """Benchmark effzoo's `name` (optimized for inference; channels_last for training) against timm's, interleaved.

    Returns a JSON-ready dict: `effzoo` and `timm` (params, MACs, `infer`/`train` stats, how each
    ran), `speedup` (effzoo images/s over timm's per bench), `timm_note` when timm is absent, and
    the protocol and environment. `threads` sets torch's CPU threads for the run (restored after).
    `runtime="onnxruntime"` times inference of the exported ONNX file (checked against eager within
    1e-4 relative) in ONNX Runtime with as many threads as torch; training always runs in torch.
    `name` may also be an exported `.onnx` file (float or int8, from `effzoo export`; needs
    `runtime="onnxruntime"`): that file is timed, inference only, at the size it was exported at,
    against timm's model of the architecture its metadata names.
    `precision="bf16-mixed"` runs effzoo's training step under bfloat16 autocast, as
    `effzoo train --precision bf16-mixed` does (timm's side stays float32, its default).
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return benchmark(name, res=res, batch_size=batch_size, bench=bench, compile=compile, runtime=runtime,
                             precision=precision, phi=phi,
                             num_classes=num_classes, in_chans=in_chans, warmup=warmup, iters=iters, repeats=repeats,
                             compare_timm=compare_timm, device=device, threads=None, log=log, **model_args)
        finally:
            torch.set_num_threads(before)
    if bench not in BENCHES:
        raise ValueError(f"unknown bench {bench!r}; choose one of {', '.join(BENCHES)}")
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(f"unknown training precision {precision!r}; choose one of {', '.join(TRAIN_PRECISIONS)}")
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    dev = resolve_device(device)
    if runtime == "onnxruntime" and (compile or dev.type != "cpu"):
        raise ValueError("runtime onnxruntime runs the exported file on the CPU without torch.compile: "
                         f"use {setting('device', 'cpu')} without {setting('compile')} (or use {setting('runtime', 'torch')})")
    for label, value, minimum in (("batch size", batch_size, 1), ("iters", iters, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
    log = log or (lambda msg: None)
    file = onnx_file_spec(name, runtime, res)  # None for a registered name
    if file is not None:
        name, model_args, num_classes, in_chans, res = (file["model_name"], file["model_args"], file["num_classes"],
                                                        file["in_chans"], file["resolution"])
        if bench == "train":
            raise ValueError(f"{file['path']} is an exported file: it can be timed for inference only "
                             f"({setting('bench', 'infer')}); training needs the checkpoint")
        if bench == "both":
            log("an ONNX file: timing inference only (training needs the checkpoint)")
            bench = "infer"
    args = dict(model_args, num_classes=num_classes, in_chans=in_chans)
    if phi is not None:
        args["phi"] = phi
    ours = create_model(name, **args).to(dev)
    res = int(res or ours.pretrained_cfg["input_size"][-1])
    stride = getattr(ours, "total_stride", 1)
    if res < stride:
        raise ValueError(f"resolution {res} is smaller than {name}'s total stride {stride}")
    size = (in_chans, res, res)

    theirs, note = _timm_model(name, args, num_classes, in_chans) if compare_timm else (None, "comparison with timm turned off")
    if theirs is not None:
        theirs = theirs.to(dev)
    sides: dict[str, dict[str, Any]] = {"effzoo": _info(ours, size)}
    if theirs is not None:
        sides["timm"] = _info(theirs, size)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *size, generator=gen).to(dev)
    y = torch.randint(0, max(num_classes, 1), (batch_size,), generator=gen).to(dev)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    protocol = {"warmup": warmup, "iters": iters, "repeats": repeats, "interleaved": True,
                "images_per_s": "batch_size / median per-batch latency"}

    if bench in ("infer", "both"):
        if file is not None:
            fast = OnnxRuntimeModel(file["path"])
            runners = {"effzoo": infer_step(fast, x)}
            sides["effzoo"]["infer_path"] = f"{file['path'].name} ({file['kind']}), {fast.runtime} ({fast.threads} threads)"
        elif runtime == "onnxruntime":
            log(f"inference: exporting {name} to ONNX (fold BN) and checking it against eager")
            fast = OnnxRuntimeModel.from_model(ours, size)
            runners = {"effzoo": infer_step(fast, x)}
            sides["effzoo"]["infer_path"] = f"BN folded, ONNX, {fast.runtime} ({fast.threads} threads)"
        else:
            log(f"inference: optimizing {name} (fold BN, channels_last{', torch.compile' if compile else ''})")
            fast = optimize_for_inference(ours, compile=compile, channels_last=True)
            runners = {"effzoo": infer_step(fast, x_cl)}
            sides["effzoo"]["infer_path"] = "BN folded, channels_last" + (", torch.compile" if compile else "") + ", inference_mode"
        if theirs is not None:
            theirs.eval()
            runners["timm"] = infer_step(theirs, x)
            sides["timm"]["infer_path"] = "eager, NCHW (timm default), inference_mode"
        with torch.inference_mode():
            results = interleaved_timings(runners, warmup, iters, repeats, dev, log, "inference")
        for side, (times, first) in results.items():
            sides[side]["infer"] = latency_stats(times, batch_size)
            sides[side]["infer"]["first_call_s"] = first
        del fast, runners

    if bench in ("train", "both"):
        ours.train().to(memory_format=torch.channels_last)
        # `effzoo train --compile` compiles the model (forward and backward); the step stays eager Python.
        bf16 = precision == "bf16-mixed"
        runners = {"effzoo": train_step(torch.compile(ours) if compile else ours, x_cl, y, bf16=bf16)}
        sides["effzoo"]["train_path"] = (("torch.compile" if compile else "eager") + ", channels_last"
                                         + (", bf16 autocast" if bf16 else "") + ", SGD step")
        if theirs is not None:
            theirs.train()
            runners["timm"] = train_step(theirs, x, y)
            sides["timm"]["train_path"] = "eager, NCHW (timm default), SGD step"
        results = interleaved_timings(runners, warmup, iters, repeats, dev, log, "training")
        for side, (times, first) in results.items():
            sides[side]["train"] = latency_stats(times, batch_size)
            sides[side]["train"]["first_call_s"] = first

    speedup = {}
    if "timm" in sides:
        for b in ("infer", "train"):
            if b in sides["effzoo"] and b in sides["timm"]:
                speedup[b] = sides["effzoo"][b]["images_per_s"] / sides["timm"][b]["images_per_s"]
    timm_version = timm.__version__
    return {
        "model": name,
        "onnx_file": str(file["path"]) if file else None,
        "quantization": file["quantization"] if file else None,
        "model_args": {k: v for k, v in args.items()},
        "resolution": res,
        "batch_size": batch_size,
        "bench": bench,
        "compile": compile,
        "runtime": runtime,
        "precision": precision,
        "effzoo": sides["effzoo"],
        "timm": sides.get("timm"),
        "timm_note": note,
        "speedup": speedup,
        "protocol": protocol,
        "environment": {"device": str(dev), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "torch": torch.__version__, "timm": timm_version},
    }


def onnx_file_spec(name: str, runtime: str, res: int | None) -> dict[str, Any] | None:
    """What an exported .onnx file (float or int8) says about the model in it, for timing the file itself;
    None when `name` is a registered model name."""
    path = Path(name)
    if path.suffix != ".onnx":
        return None
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path} (write one with `effzoo export --format onnx`)")
    if runtime != "onnxruntime":
        raise ValueError(f"{path} is an ONNX file, which runs in ONNX Runtime: add {setting('runtime', 'onnxruntime')}")
    meta = read_metadata(path)
    if not meta.get("model_name") or len(meta.get("input_size") or ()) != 3:
        raise ValueError(f"{path} carries no effzoo metadata (model name, input size): export it with `effzoo export`")
    chans, height = int(meta["input_size"][0]), int(meta["input_size"][-1])
    if res is not None and res != height:
        raise ValueError(f"{path} was exported at {height} px and takes only that size; drop {setting('res')} "
                         f"or export again at {res} px")
    args = {k: v for k, v in (meta.get("model_args") or {}).items() if k not in ("num_classes", "in_chans")}
    quantization = meta.get("quantization")
    return {"path": path, "model_name": meta["model_name"], "model_args": args, "in_chans": chans, "resolution": height,
            "num_classes": int(meta.get("num_classes") or (meta.get("model_args") or {}).get("num_classes", 1000)),
            "kind": "int8" if quantization else "float32", "quantization": quantization}


def _info(model: nn.Module, size: tuple[int, int, int]) -> dict[str, Any]:
    info = model_info(model, size)
    return {"params": info["params"], "macs": info["macs"]}


def infer_step(model: nn.Module, x: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            model(x)

    return step


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        # As Lightning's bf16-mixed: forward and loss under autocast, backward and the update outside it.
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def interleaved_timings(runners: dict[str, Callable[[], None]], warmup: int, iters: int, repeats: int, dev: torch.device,
                log: Callable[[str], None], what: str) -> dict[str, tuple[list[float], float]]:
    """Per-batch seconds for each runner, rounds interleaved; and each runner's first-call seconds (compile, caches)."""
    first: dict[str, float] = {}
    for side, step in runners.items():
        for i in range(max(warmup, 1)):
            start = time.perf_counter()
            step()
            _sync(dev)
            if i == 0:
                first[side] = time.perf_counter() - start
    times: dict[str, list[float]] = {side: [] for side in runners}
    for r in range(repeats):
        for side, step in runners.items():
            for _ in range(iters):
                start = time.perf_counter()
                step()
                _sync(dev)
                times[side].append(time.perf_counter() - start)
        log(f"{what}: round {r + 1}/{repeats} " + ", ".join(f"{s} {len(t)} batches" for s, t in times.items()))
    return {side: (times[side], first[side]) for side in runners}

