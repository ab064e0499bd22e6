"""The README's main job, measured as a newcomer meets it (issue 16): `effzoo train --phi 0` on digits.

    python benchmarks/main_job.py                          # 3 seeds, alone, then two at once
    python benchmarks/main_job.py --seeds 0 --no-concurrent -- --epochs 6 --image-size 24   # try a variant

Prints, per seed: training seconds (the fit, from metrics.json), process wall time, val and test
top-1, the first epoch's val loss; then two main jobs started together against one alone (the share
of solo speed each keeps); and `effzoo --help` start-up. Writes everything to OUTPUT/main_job.json.
Run it alone: other jobs on the 2 cores slow every number.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def effzoo_cmd(*argv: str) -> list[str]:
    exe = shutil.which("effzoo")
    return [exe, *argv] if exe else [sys.executable, "-m", "effzoo", *argv]


def first_epoch_val_loss(run: Path) -> float | None:
    for path in sorted(run.glob("logs/*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("val_loss"):
                    return float(row["val_loss"])
    return None


def start(seed: int, out: Path, extra: list[str]) -> tuple[subprocess.Popen, float, Path]:
    run = out / f"seed{seed}"
    if run.exists():
        shutil.rmtree(run)
    cmd = effzoo_cmd("train", "--phi", "0", "--seed", str(seed), "--output", str(run), "--no-progress-bar", *extra)
    log = open(out / f"seed{seed}.log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.perf_counter(), run


def finish(proc: subprocess.Popen, started: float, run: Path) -> dict:
    code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{run}: effzoo train exited {code}; see {run}.log")
    metrics = json.loads((run / "metrics.json").read_text())
    return {"run": str(run), "wall_s": round(wall, 1), "train_s": metrics.get("train_seconds"),
            "val_top1": metrics.get("val_top1"), "test_top1": metrics.get("test_top1"),
            "first_epoch_val_loss": first_epoch_val_loss(run), "epochs": metrics.get("epochs_run")}


def help_seconds(runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(effzoo_cmd("--help"), stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--output", default="runs/bench-main-job")
    p.add_argument("--no-concurrent", action="store_true", help="skip the two-jobs-at-once measurement")
    p.add_argument("extra", nargs="*", help="extra `effzoo train` arguments (after --)")
    args = p.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    (out / "solo").mkdir(exist_ok=True)
    solo = [finish(*start(s, out / "solo", args.extra)) for s in seeds]  # one after another: alone
    for r in solo:
        print(f"solo  {r['run']}: train {r['train_s']} s (wall {r['wall_s']} s), val top-1 {100 * r['val_top1']:.2f}%, "
              f"test top-1 {100 * r['test_top1']:.2f}%, first-epoch val loss {r['first_epoch_val_loss']:.3f}", flush=True)
    result = {"extra_args": args.extra, "solo": solo, "help_s": round(help_seconds(), 3)}
    if not args.no_concurrent:
        (out / "pair").mkdir(exist_ok=True)
        jobs = [start(s, out / "pair", args.extra) for s in seeds[:2] or [0, 1]]
        pair = [finish(*j) for j in jobs]
        base = statistics.mean(r["train_s"] or r["wall_s"] for r in solo)
        for r in pair:
            r["share_of_solo_speed"] = round(base / (r["train_s"] or r["wall_s"]), 3)
            print(f"pair  {r['run']}: train {r['train_s']} s, {100 * r['share_of_solo_speed']:.0f}% of solo speed, "
                  f"val top-1 {100 * r['val_top1']:.2f}%", flush=True)
        result["pair"] = pair
    trains = [r["train_s"] or r["wall_s"] for r in solo]
    vals = [100 * r["val_top1"] for r in solo]
    print(f"main job: training {statistics.mean(trains):.0f} s (min {min(trains):.0f}, max {max(trains):.0f}), "
          f"val top-1 {statistics.mean(vals):.2f}% (min {min(vals):.2f}) over seeds {seeds}; "
          f"`effzoo --help` {result['help_s']:.2f} s")
    (out / "main_job.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
