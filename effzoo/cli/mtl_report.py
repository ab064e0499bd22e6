"""`effzoo mtl-report`: single-task baselines vs the multi-task model, paired by seed.

Takes every `effzoo train` option (the recipe shared by all runs) plus the seeds, the compared
split and the noise band; the training and pairing is `effzoo.training.mtl_report.mtl_report`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

from . import train as train_cli

EXAMPLE = """example:
  effzoo mtl-report --data fashion-mnist --data-dir /usr/share/datasets/fashion-mnist --model mobilenetv2_035 \\
      --tasks fine:cls:10,coarse:cls:4 --main-label-limit 1000 --epochs 3 --seeds 0,1,2 --output runs/mtl-e1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    train_cli.add_arguments(p)
    p.epilog = EXAMPLE
    p.add_argument("--seeds", default="0,1,2", metavar="S,S,...", help="seeds; STL and MTL are paired by seed")
    p.add_argument("--metric", default="test", choices=("test", "val"),
                   help="split on which the selected models are compared, each task by its own metric "
                        "(top-1, mAP, MAE) (default: test)")
    p.add_argument("--noise-band", type=float, default=0.0, metavar="PCT",
                   help="flag transfer only beyond this |Δ%%| too (e.g. from a neutral-control run)")
    p.add_argument("--report-json", metavar="FILE", help="where to write the JSON report (default OUTPUT/mtl_report.json)")


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    try:
        seeds = [int(s) for s in (text.split(",") if isinstance(text, str) else text) if str(s).strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct integers, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..mtl.report import print_report
    from ..training.mtl_report import mtl_report, write_report

    seeds = parse_seeds(args.seeds)
    cfg = train_cli.resolve_config(args)
    if cfg.output is None:
        cfg = cfg.replace(output=str(Path("runs") / f"mtl-report-{Path(cfg.data).name or 'data'}-{cfg.model}"))
    report, details = mtl_report(cfg, seeds, args.metric, args.noise_band)
    print_report(report)
    for pair, c in details["gradient_cosine_last_epoch"].items():
        print(f"gradient cosine {pair} (shared parameters, last epoch): {c['mean']:+.3f}"
              + ("" if math.isnan(c["std"]) else f" ± {c['std']:.3f}"))
    if details["excluded_from_baselines"]:
        print(f"no baseline (random labels; MTL-only): {', '.join(details['excluded_from_baselines'])}")
    path = write_report(report, details, args.report_json or Path(cfg.output) / "mtl_report.json")
    print(f"effzoo mtl-report: report written to {path}")
    return 0
