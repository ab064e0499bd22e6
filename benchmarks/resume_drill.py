"""Crash drill (issue 20): SIGKILL a real `effzoo train` at random moments, `--resume` it, compare.

    python benchmarks/resume_drill.py                      # 4-epoch digits run, 5 random kills
    python benchmarks/resume_drill.py --kills 2 -- --phi -4 --epochs 3   # other train flags after --

For each kill: the moment (seconds into the run, and the epoch the last checkpoint holds), then the
resumed run's val top-1 and best epoch against the uninterrupted run's, and the largest absolute
difference between the two exported weight sets. All should be equal: a crash is a clean stop.
A kill before the first checkpoint exists leaves nothing to resume; the drill then starts the run
again, as a user would. Writes OUTPUT/resume_drill.json. Run it alone: it measures nothing about
speed, but other jobs make each run slower and the kills land in other places.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

DEFAULT_TRAIN = ["--data", "digits", "--phi", "-2", "--epochs", "4", "--seed", "7"]


def train_cmd(output: Path, train_args: list[str], resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "effzoo", "train", *train_args, "--output", str(output), "--no-progress-bar"]
    return cmd + (["--resume"] if resume else [])


def fixed_threads_env() -> dict[str, str]:
    """Every run with the same torch thread count: float sums depend on it, and a run sizes its thread pool by
    the machine's load unless OMP_NUM_THREADS is set (CpuShare). Exactness is promised at a fixed count."""
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)}


def run_to_end(output: Path, train_args: list[str], resume: bool = False) -> float:
    """One complete `effzoo train` (or `--resume`); returns its wall seconds."""
    started = time.perf_counter()
    with open(output.with_suffix(".log"), "a") as log:
        code = subprocess.run(train_cmd(output, train_args, resume), stdout=log, stderr=subprocess.STDOUT,
                              env=fixed_threads_env()).returncode
    if code != 0:
        raise RuntimeError(f"effzoo train exited {code}; see {output.with_suffix('.log')}")
    return time.perf_counter() - started


def kill_after(output: Path, train_args: list[str], seconds: float, after_first_checkpoint: bool = False) -> bool:
    """Start a run and SIGKILL it `seconds` later (counted from its first `last.ckpt` with
    `after_first_checkpoint`); True when it was killed (not already finished)."""
    with open(output.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(train_cmd(output, train_args), stdout=log, stderr=subprocess.STDOUT, env=fixed_threads_env())
        while after_first_checkpoint and proc.poll() is None and not (output / "last.ckpt").is_file():
            time.sleep(0.05)
        try:
            proc.wait(timeout=seconds)
            return False
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True


def saved_epoch(output: Path) -> int | None:
    """The epoch `last.ckpt` ends (None without one)."""
    last = output / "last.ckpt"
    if not last.is_file():
        return None
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])


def outcome(output: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    return json.loads((output / "metrics.json").read_text()), load_file(output / "model.safetensors")


def max_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        raise RuntimeError(f"weight names differ: {sorted(a.keys() ^ b.keys())[:5]}")
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def drill(workdir: Path, train_args: list[str], kills: int, seed: int = 0, after_first_checkpoint: bool = False) -> dict:
    """The uninterrupted reference, then `kills` killed-and-resumed runs compared with it. The kill moments
    are drawn over the reference's duration, or (`after_first_checkpoint`) over the epochs after the first."""
    workdir.mkdir(parents=True, exist_ok=True)
    reference = workdir / "uninterrupted"
    shutil.rmtree(reference, ignore_errors=True)
    reference_seconds = run_to_end(reference, train_args)
    ref_metrics, ref_weights = outcome(reference)
    rng = random.Random(seed)
    if after_first_checkpoint:  # the fit's own seconds, without start-up and export
        epochs = max(1, int(ref_metrics["epochs_run"]))
        window = ref_metrics["train_seconds"] * (epochs - 1) / epochs
    else:
        window = reference_seconds
    times = [rng.uniform(0.02, 0.95) * window for _ in range(kills)]
    rows = []
    for i, at in enumerate(times):
        run = workdir / f"killed{i}"
        shutil.rmtree(run, ignore_errors=True)
        while not kill_after(run, train_args, at, after_first_checkpoint):
            at *= 0.6  # the run ended first (it ran faster than the reference did): kill the next one earlier
            shutil.rmtree(run)
        epoch = saved_epoch(run)
        if epoch is None:  # nothing saved yet: start again, as a user would
            shutil.rmtree(run)
        run_to_end(run, train_args, resume=epoch is not None)
        metrics, weights = outcome(run)
        rows.append({"kill_at_s": round(at, 1), "resumed_from_epoch": epoch,
                     "val_top1": metrics.get("val_top1"), "best_epoch": metrics.get("best_epoch"),
                     "max_weight_diff": max_weight_difference(ref_weights, weights)})
    return {"train_args": train_args, "uninterrupted": {"seconds": round(reference_seconds, 1),
            "val_top1": ref_metrics.get("val_top1"), "best_epoch": ref_metrics.get("best_epoch")}, "kills": rows}


def report(result: dict) -> None:
    ref = result["uninterrupted"]
    print(f"uninterrupted: val top-1 {ref['val_top1']:.4f}, best epoch {ref['best_epoch']} ({ref['seconds']} s)")
    print(f"{'kill at':>8} {'from epoch':>10} {'val top-1':>10} {'best epoch':>10} {'max |dw|':>10}  equal")
    for r in result["kills"]:
        same = r["val_top1"] == ref["val_top1"] and r["best_epoch"] == ref["best_epoch"] and r["max_weight_diff"] < 1e-5
        frm = "-" if r["resumed_from_epoch"] is None else str(r["resumed_from_epoch"])
        print(f"{r['kill_at_s']:>7}s {frm:>10} {r['val_top1']:>10.4f} {r['best_epoch']!s:>10} "
              f"{r['max_weight_diff']:>10.2e}  {'yes' if same else 'NO'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="draws the kill moments")
    p.add_argument("--output", default="runs/resume_drill")
    p.add_argument("train_args", nargs="*", help="effzoo train flags (after --)")
    args = p.parse_args()
    workdir = Path(args.output)
    result = drill(workdir, args.train_args or DEFAULT_TRAIN, args.kills, args.seed)
    report(result)
    (workdir / "resume_drill.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
