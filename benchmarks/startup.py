"""Start-up time of the `effzoo` command (issue 16): median wall time of 3 runs, each a fresh process.

    python benchmarks/startup.py [--runs 3]

Targets on the 2-core development machine: `effzoo --help` and argument errors within 1.5 s (no
torch, Lightning or matplotlib is imported), `effzoo models efficientnet_b0` within 5 s (torch, one
model built and its MACs counted). Run it alone: other jobs on the machine slow every number.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

CASES = {
    "effzoo --help": ["--help"],
    "effzoo train --bogus": ["train", "--bogus"],
    "effzoo models 'efficientnet_b0'": ["models", "efficientnet_b0"],
}
LIMITS_S = {"effzoo --help": 1.5, "effzoo train --bogus": 1.5, "effzoo models 'efficientnet_b0'": 5.0}


def wall_time(argv: list[str]) -> float:
    # The installed `effzoo` script when there is one (what users run), else `python -m effzoo`.
    exe = shutil.which("effzoo")
    cmd = [exe, *argv] if exe else [sys.executable, "-m", "effzoo", *argv]
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per command; the median is reported")
    args = p.parse_args()
    print(f"{'command':36} {'median s':>9} {'runs (s)':>24} {'limit s':>8}")
    for name, argv in CASES.items():
        times = [wall_time(argv) for _ in range(args.runs)]
        median = statistics.median(times)
        flag = "" if median <= LIMITS_S[name] else "  over the limit"
        print(f"{name:36} {median:9.2f} {' '.join(f'{t:.2f}' for t in times):>24} {LIMITS_S[name]:8.1f}{flag}")


if __name__ == "__main__":
    main()
