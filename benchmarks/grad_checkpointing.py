"""Peak training memory of EfficientNet-B0 (224 px, batch 32) with and without `--grad-checkpointing`, the
time it costs, and proof that the step is the same (loss and gradients).

    python benchmarks/grad_checkpointing.py [--model efficientnet_b0] [--res 224] [--batch-size 32] [--steps 3]
                                            [--check-batch 4] [--device auto|cpu|cuda] [--json FILE]

Memory, measured per variant in a fresh process (so one variant's allocations cannot hide the other's):
- on a CUDA GPU, `torch.cuda.max_memory_allocated` over the first training step minus what was allocated
  before it (weights, inputs): the allocator's exact peak of activations, gradients and optimizer state;
- on a CPU, which has no allocator statistics, the process's peak resident set size (`ru_maxrss`) during the
  first step minus the resident size just before it: every page the step made the allocator take. It is a
  high-water mark of the whole process (activations dominate at this size; gradients and SGD momentum are the
  same for both variants), so compare the two numbers rather than reading either as activations alone.
Time: the mean of the steps after the first (the first pays for allocation). The step is effzoo's: train
mode, channels_last, cross-entropy, SGD with momentum. The equality check runs both variants on one batch of
`--check-batch` images from the same weights and random state and prints the largest differences.
Target (issue 17): peak memory down by >= 40%, loss and gradients equal within float tolerance.

Measured (2 CPU cores, alone, B0 224 px batch 32): peak step memory 2,823 MiB plain, 1,287 MiB checkpointed
(54.4% less); step 2.62 s vs 3.99 s (1.52x); loss, gradients (largest difference 0) and BN statistics equal.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

import effzoo


def make(model_name: str, checkpointing: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = effzoo.create_model(model_name).to(memory_format=torch.channels_last).train()
    model.set_grad_checkpointing(checkpointing)
    return model


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), for the CPU baseline."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(args: argparse.Namespace, checkpointing: bool) -> dict[str, Any]:
    """One variant, in this (fresh) process: peak memory of the first step, then the time of the others."""
    device = torch.device(args.device)
    model = make(args.model, checkpointing).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, args.res, args.res, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak, how = torch.cuda.max_memory_allocated() - before, "cuda max_memory_allocated"
    else:
        before = rss_bytes()
        step()
        peak, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before, "ru_maxrss - rss before"
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return {"checkpointing": checkpointing, "peak_bytes": peak, "measured_by": how,
            "step_seconds": sum(times) / len(times), "steps_timed": len(times)}


def same_step(args: argparse.Namespace) -> dict[str, float]:
    """Loss and gradients of one step, plain against checkpointed, from the same weights and random state."""
    plain = make(args.model, False)
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing(True)
    x = torch.randn(args.check_batch, 3, args.res, args.res).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.check_batch,))
    losses = []
    for model in (plain, ckpt):
        torch.manual_seed(1)  # the same stochastic-depth draws
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
    grad_diff = max((p.grad - q.grad).abs().max().item() for p, q in zip(plain.parameters(), ckpt.parameters()))
    grad_scale = max(p.grad.abs().max().item() for p in plain.parameters())
    buffers_equal = all(torch.equal(a, b) for a, b in zip(plain.buffers(), ckpt.buffers()))
    return {"loss_plain": losses[0], "loss_checkpointed": losses[1], "max_grad_diff": grad_diff,
            "max_grad": grad_scale, "bn_buffers_equal": buffers_equal}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the measured first one")
    p.add_argument("--check-batch", type=int, default=4)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json")
    p.add_argument("--variant", choices=("plain", "checkpointed"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.variant:
        print(json.dumps(measure(args, args.variant == "checkpointed")))
        return
    results = {}
    for variant in ("plain", "checkpointed"):
        cmd = [sys.executable, __file__, "--variant", variant, "--model", args.model, "--res", str(args.res),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    check = same_step(args)
    plain, ckpt = results["plain"], results["checkpointed"]
    drop = 1 - ckpt["peak_bytes"] / plain["peak_bytes"]
    slower = ckpt["step_seconds"] / plain["step_seconds"]
    print(f"{args.model} @ {args.res} px, batch {args.batch_size}, {args.device} ({plain['measured_by']}):")
    print(f"  peak step memory: plain {plain['peak_bytes'] / 2**20:.0f} MiB, checkpointed {ckpt['peak_bytes'] / 2**20:.0f} MiB "
          f"({100 * drop:.1f}% less; target >= 40%)")
    print(f"  step time: plain {plain['step_seconds']:.2f} s, checkpointed {ckpt['step_seconds']:.2f} s ({slower:.2f}x)")
    print(f"  same step (batch {args.check_batch}): loss {check['loss_plain']:.6f} vs {check['loss_checkpointed']:.6f}, "
          f"largest gradient difference {check['max_grad_diff']:.2e} (largest gradient {check['max_grad']:.2e}), "
          f"BN statistics equal: {check['bn_buffers_equal']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "memory_drop": drop, "time_ratio": slower,
                       "same_step": check}, f, indent=2)


if __name__ == "__main__":
    main()
