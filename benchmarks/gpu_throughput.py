"""Training-step and inference images/s on a CUDA GPU: effzoo next to timm, float32 and bfloat16, both layouts.

    python benchmarks/gpu_throughput.py [--model efficientnet_b0] [--res 224] [--batch-size 128]
                                        [--infer-batch-size 256] [--parts train,cudnn,infer,compile] [--json FILE]

The CPU benchmarks (`train_throughput.py`, `inference.py`) compare effzoo's default path with
timm's default one. On a GPU the questions differ, so this script measures a grid in one process
with interleaved rounds (timings on shared machines are noisy: read ratios within one run):

* training step (forward, cross-entropy, backward, SGD update), float32 and bf16 autocast (as
  `effzoo train --precision bf16-mixed`), for effzoo and timm, each in NCHW and channels_last;
* the same bf16 channels_last step with cuDNN autotuning (`cudnn.benchmark`) on and off: Lightning
  leaves it off unless asked (`Trainer(benchmark=...)`);
* inference: effzoo's inference copy (BN folded, channels_last) against timm eager, float32 and bf16;
* `compile` (a part to ask for): effzoo's bf16 channels_last training step through `torch.compile`
  (compile time printed).

Measured on one H200 (torch 2.11, B0, 224 px, batch 128; README): channels_last is the GPU's big
lever (training 1.72x NCHW in float32, 1.84x timm's float32 NCHW under bf16); bf16 in NCHW is no
faster than float32; cudnn.benchmark and torch.compile did not speed the step up.

Needs CUDA; on a machine without it the script says so and exits with status 2 (`--device cpu`
runs the same grid on the CPU, for checking the script with tiny sizes).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

import torch

import effzoo
from effzoo.evaluation.benchmark import infer_step, interleaved_timings, latency_stats, train_step
from effzoo.evaluation.inference import optimize_for_inference

DEVICE = torch.device("cuda")  # --device cpu only to check the script here
PARTS = ("train", "cudnn", "infer", "compile")


def timm_model(name: str, num_classes: int) -> torch.nn.Module:
    import timm

    return timm.create_model(name, num_classes=num_classes)


def time_grid(runners: dict[str, Callable[[], None]], batch: int, iters: int, repeats: int) -> dict[str, Any]:
    timings = interleaved_timings(runners, 3, iters, repeats, DEVICE, print, "rounds")
    return {name: dict(latency_stats(times, batch), first_call_s=first) for name, (times, first) in timings.items()}


def build(side: str, name: str, channels_last: bool) -> torch.nn.Module:
    """effzoo's or timm's `name` (1000 classes, seed 0) on the device, in the layout asked for."""
    torch.manual_seed(0)
    model = effzoo.create_model(name, num_classes=1000) if side == "effzoo" else timm_model(name, 1000)
    model = model.to(DEVICE)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def training_grid(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """effzoo/timm x NCHW/channels_last x float32/bf16 training steps, interleaved per precision."""
    results: dict[str, Any] = {}
    for bf16 in (False, True):
        runners = {}
        for side in ("effzoo", "timm"):
            for cl in (False, True):
                model = build(side, args.model, cl).train()
                runners[f"{side} {'channels_last' if cl else 'nchw'}"] = train_step(model, layout(x, cl), y, bf16=bf16)
        label = "bf16" if bf16 else "fp32"
        print(f"training, {label}: {', '.join(runners)}")
        results[label] = time_grid(runners, len(x), args.iters, args.repeats)
    return results


def cudnn_autotune(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """effzoo's bf16 channels_last step with cudnn.benchmark off, then on (not interleaved: it is a global switch)."""
    out = {}
    before = torch.backends.cudnn.benchmark
    try:
        for flag in (False, True):
            torch.backends.cudnn.benchmark = flag
            step = train_step(build("effzoo", args.model, True).train(), layout(x, True), y, bf16=True)
            out[f"cudnn.benchmark={flag}"] = time_grid({"effzoo": step}, len(x), args.iters, args.repeats)["effzoo"]
    finally:
        torch.backends.cudnn.benchmark = before
    return out


def inference_grid(args: argparse.Namespace) -> dict[str, Any]:
    x = torch.randn(args.infer_batch_size, 3, args.res, args.res, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    ours = optimize_for_inference(build("effzoo", args.model, False).eval(), channels_last=True)
    theirs = build("timm", args.model, False).eval()
    results = {}
    with torch.inference_mode():
        for bf16 in (False, True):
            runners = {"effzoo optimized": infer_step(ours, layout(x, True), bf16=bf16),
                       "timm eager nchw": infer_step(theirs, x, bf16=bf16)}
            results["bf16" if bf16 else "fp32"] = time_grid(runners, len(x), args.iters, args.repeats)
    return results


def compiled_step(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """effzoo's bf16 channels_last step through torch.compile; its first call (the compilation) is `compile_s`."""
    step = train_step(torch.compile(build("effzoo", args.model, True).train()), layout(x, True), y, bf16=True)
    stats = time_grid({"effzoo compiled": step}, len(x), args.iters, args.repeats)["effzoo compiled"]
    return dict(stats, compile_s=stats["first_call_s"])


def print_report(report: dict[str, Any]) -> None:
    if "train" in report:
        base = report["train"]["fp32"]["timm nchw"]["images_per_s"]
        for label, grid in report["train"].items():
            for name, s in grid.items():
                print(f"  train {label:4s} {name:22s} {s['images_per_s']:8.0f}  {s['images_per_s'] / base:5.2f}x timm fp32 nchw")
    for name, s in report.get("train_cudnn_benchmark", {}).items():
        print(f"  train bf16 effzoo channels_last {name:22s} {s['images_per_s']:8.0f}")
    if "train_compiled_bf16" in report:
        s = report["train_compiled_bf16"]
        print(f"  train bf16 effzoo compiled channels_last {s['images_per_s']:8.0f} (compile {s['compile_s']:.0f} s)")
    if "infer" in report:
        ibase = report["infer"]["fp32"]["timm eager nchw"]["images_per_s"]
        for label, grid in report["infer"].items():
            for name, s in grid.items():
                print(f"  infer {label:4s} {name:22s} {s['images_per_s']:8.0f}  {s['images_per_s'] / ibase:5.2f}x timm fp32")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--infer-batch-size", type=int, default=256)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--parts", default="train,cudnn,infer",
                   help="comma-separated parts of train, cudnn, infer, compile (compile is slow: minutes)")
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu only to check the script")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - set(PARTS):
        p.error(f"--parts takes a comma-separated list of {', '.join(PARTS)}; got {args.parts!r}")
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("gpu_throughput.py needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
        return 2

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.res, args.res, generator=gen).to(DEVICE)
    y = torch.randint(0, 1000, (args.batch_size,), generator=gen).to(DEVICE)
    report: dict[str, Any] = {
        "model": args.model, "res": args.res, "batch_size": args.batch_size, "infer_batch_size": args.infer_batch_size,
        "gpu": torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu", "torch": torch.__version__,
    }
    if "train" in parts:
        report["train"] = training_grid(args, x, y)
    if "cudnn" in parts:
        report["train_cudnn_benchmark"] = cudnn_autotune(args, x, y)
    if "infer" in parts:
        report["infer"] = inference_grid(args)
    if "compile" in parts:
        report["train_compiled_bf16"] = compiled_step(args, x, y)
    if DEVICE.type == "cuda":
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30

    print(f"\n{args.model} @ {args.res} px on {report['gpu']} (torch {torch.__version__}), images/s (median batch)")
    print_report(report)
    if "peak_memory_gib" in report:
        print(f"  peak GPU memory {report['peak_memory_gib']:.1f} GiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
