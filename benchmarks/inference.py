"""Inference images/s of effzoo's optimized EfficientNet-B0 against timm's default eager model, on this machine.

    python benchmarks/inference.py [--model efficientnet_b0] [--res 224] [--batch-size 16]
                                   [--iters 5] [--repeats 5] [--threads N] [--no-compile] [--no-onnxruntime]
                                   [--json FILE]

Contestants, all in one process with interleaved rounds (a shared machine's slow phases hit all
of them), under torch.inference_mode():

* timm eager: `timm.create_model(name)`, NCHW input (timm's default; the baseline, 1.00x)
* effzoo eager: our model, NCHW (same architecture, so it should be ~1.0x)
* effzoo channels_last: our model, channels_last weights and input, no folding
* effzoo optimized: `optimize_for_inference(m)` (BN folded + channels_last)
* effzoo optimized + compile: the same through `torch.compile` (inductor); its compile time,
  the first call, is printed separately
* effzoo ONNX Runtime: the optimized model exported to ONNX (`effzoo export --format onnx`: BN
  folded, checked against eager) and run by ONNX Runtime on the CPU with the same thread count
  (`effzoo.export.onnx.OnnxRuntimeModel`; NCHW input, the layout ONNX files take)

images/s = batch / median per-batch latency; the ratio is against timm eager in the same run.
Issue #6's target: >= 3x timm eager at 224 px, batch 16, EfficientNet-B0.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from typing import Callable

import timm
import torch

import effzoo
from effzoo.evaluation.benchmark import interleaved_timings, latency_stats
from effzoo.export.onnx import OnnxRuntimeModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--iters", type=int, default=5, help="batches per contestant per round")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile contestant")
    p.add_argument("--no-onnxruntime", action="store_true", help="skip the ONNX Runtime contestant")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's). On a CPU shared with other jobs, 1 thread avoids OpenMP "
                        "barrier stalls that can slow 2-thread runs 3x")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    size = (3, args.res, args.res)
    x = torch.randn(args.batch_size, *size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ours = effzoo.create_model(args.model).eval()
    ref = timm.create_model(args.model).eval()
    ours.load_state_dict(ref.state_dict())  # same weights; speed does not depend on them, but outputs can be compared

    contestants: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]] = {
        "timm eager (NCHW)": (ref, x),
        "effzoo eager (NCHW)": (ours, x),
        "effzoo channels_last": (copy.deepcopy(ours).to(memory_format=torch.channels_last), x_cl),
        "effzoo optimized": (effzoo.optimize_for_inference(ours), x_cl),
    }
    compile_s = None
    if not args.no_compile:
        compiled = effzoo.optimize_for_inference(ours, compile=True)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x_cl)
        compile_s = time.perf_counter() - start
        print(f"torch.compile first call (compilation): {compile_s:.1f} s")
        contestants["effzoo optimized + compile"] = (compiled, x_cl)

    if not args.no_onnxruntime:
        start = time.perf_counter()
        runner = OnnxRuntimeModel.from_model(ours, size)  # raises if the file disagrees with eager by > 1e-4 relative
        print(f"ONNX export + check: {time.perf_counter() - start:.1f} s")
        contestants["effzoo ONNX Runtime"] = (runner, x)

    with torch.inference_mode():
        want = ref(x)
        for label, (model, inp) in contestants.items():
            err = ((model(inp) - want).abs().max() / want.abs().max()).item()
            print(f"{label:28s} max relative difference from timm: {err:.1e}")
        runners = {label: (lambda m=model, i=inp: m(i)) for label, (model, inp) in contestants.items()}
        timings = interleaved_timings(runners, 2, args.iters, args.repeats, torch.device("cpu"), print, "rounds")

    base = None
    rows = []
    print(f"\n{args.model}, {args.res} px, batch {args.batch_size}, {torch.get_num_threads()} threads "
          f"({os.cpu_count()} CPUs), torch {torch.__version__}, timm {timm.__version__}")
    print(f"{'':28s} {'images/s':>9s} {'p50 ms':>8s} {'p90 ms':>8s} {'vs timm':>8s}")
    for label, (times, _) in timings.items():
        s = latency_stats(times, args.batch_size)
        base = base or s["images_per_s"]
        ratio = s["images_per_s"] / base
        rows.append({"contestant": label, "ratio_vs_timm_eager": ratio, **s})
        print(f"{label:28s} {s['images_per_s']:9.1f} {s['latency_ms']['p50']:8.1f} {s['latency_ms']['p90']:8.1f} {ratio:7.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "resolution": args.res, "batch_size": args.batch_size,
                       "threads": torch.get_num_threads(), "compile_s": compile_s, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
