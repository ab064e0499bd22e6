"""`effzoo mtl-report`: single-task baselines vs the multi-task model, paired by seed.

For each seed: every task with a real label source (random-label probes have no meaningful
baseline and are left out of Δm, as mtl.md §5 asks) is trained alone, with the same backbone,
recipe, budget (epochs over the same data) and selection rule (best validation top-1 of that
task), and then the multi-task model of `--tasks` is trained. The report compares the selected
models' metric (test top-1 by default) per task, prints the `transfer_report` table and writes
JSON. The gradient cosine between tasks on the shared parameters (logged by every multi-task
run at the end of each epoch) is collected from the runs' logs as a diagnostic.

Runs that already hold a `metrics.json` are reused, so an interrupted report resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .config import TrainConfig

EXAMPLE = """example:
  effzoo mtl-report --data fashion-mnist --data-dir /usr/share/datasets/fashion-mnist --model mobilenetv2_035 \\
      --tasks fine:cls:10,coarse:cls:4 --main-label-limit 1000 --epochs 3 --seeds 0,1,2 --output runs/mtl-e1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli_train import add_arguments as train_arguments

    train_arguments(p)
    p.epilog = EXAMPLE
    p.add_argument("--seeds", default="0,1,2", metavar="S,S,...", help="seeds; STL and MTL are paired by seed")
    p.add_argument("--metric", default="test", choices=("test", "val"),
                   help="split whose top-1 of the selected models is compared (default: test)")
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


def _run(cfg: TrainConfig) -> dict[str, Any]:
    from .run import run_training

    done = Path(cfg.output) / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    return dict(run_training(cfg).metrics)


def last_cosines(output: str | Path) -> dict[str, float]:
    """The last logged `cos/a|b` of each task pair in a run's CSV logs."""
    out: dict[str, float] = {}
    for f in sorted(Path(output, "logs").glob("version_*/metrics.csv")):
        for row in csv.DictReader(f.open()):
            for k, v in row.items():
                if k and k.startswith("cos/") and v:
                    out[k[4:]] = float(v)
    return out


def metric_of(metrics: dict[str, Any], split: str, task: str, where: str) -> float:
    key = f"{split}_{task}_top1"
    if key not in metrics:
        raise ValueError(f"{where}: no {key} in its metrics (has {sorted(metrics)}); "
                         "with --metric test the data needs a test split")
    return float(metrics[key])


def mtl_report(cfg: TrainConfig, seeds: Sequence[int], metric: str = "test", noise_band: float = 0.0,
               log: Any = print, baselines: Sequence[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train the baselines and the multi-task model per seed; return (TransferReport, details).

    `baselines` limits the single-task runs to these tasks (e.g. only the main one, to save time;
    the other tasks are then reported as MTL-only and left out of Δm)."""
    from ..mtl import parse_tasks, transfer_report

    if cfg.tasks is None:
        raise ValueError("mtl-report needs --tasks (at least two tasks)")
    specs = parse_tasks(cfg.tasks)
    if len(specs) < 2:
        raise ValueError("mtl-report compares a multi-task model with single-task baselines: give >= 2 tasks")
    if metric == "test" and not cfg.test:
        raise ValueError("--metric test needs --test (the selected model evaluated on the test split)")
    base = Path(cfg.output or "runs/mtl-report")
    baselined = [t for t in specs if t.source != "random" and t.kind == "classification"]
    if baselines is not None:
        unknown = sorted(set(baselines) - {t.name for t in specs})
        if unknown:
            raise ValueError(f"baselines name unknown task(s) {unknown}")
        baselined = [t for t in baselined if t.name in baselines]
    if specs[0] not in baselined:
        raise ValueError(f"the main task {specs[0].name!r} needs a real label source for its baseline")
    stl: dict[str, list[float]] = {t.name: [] for t in baselined}
    mtl: dict[str, list[float]] = {t.name: [] for t in specs if t.kind == "classification"}
    cosines: list[dict[str, float]] = []
    for seed in seeds:
        for t in baselined:
            out = base / f"stl-{t.name}" / f"seed{seed}"
            log(f"mtl-report: seed {seed}: single-task {t.name} -> {out}")
            run_cfg = cfg.replace(tasks=[t.to_dict()], weighting="fixed", weighting_options={}, seed=seed,
                                  output=str(out), resume=False,
                                  main_label_limit=cfg.main_label_limit if t == specs[0] else None)
            stl[t.name].append(metric_of(_run(run_cfg), metric, t.name, str(out)))
        out = base / "mtl" / f"seed{seed}"
        log(f"mtl-report: seed {seed}: multi-task {','.join(t.name for t in specs)} -> {out}")
        metrics = _run(cfg.replace(seed=seed, output=str(out), resume=False))
        for name in mtl:
            mtl[name].append(metric_of(metrics, metric, name, str(out)))
        cosines.append(last_cosines(out))
    report = transfer_report(stl, mtl, 1, seeds=list(seeds), noise_band=noise_band)
    pairs = sorted({k for c in cosines for k in c})
    cos_summary = {}
    for k in pairs:
        xs = [c[k] for c in cosines if k in c]
        m = sum(xs) / len(xs)
        s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
        cos_summary[k] = {"mean": m, "std": s, "per_seed": xs}
    details = {"stl": stl, "mtl": mtl, "metric": f"{metric}_top1", "gradient_cosine_last_epoch": cos_summary,
               "excluded_from_baselines": [t.name for t in specs if t not in baselined], "output": str(base)}
    return report, details


def run(args: argparse.Namespace) -> int:
    from ..mtl import print_report, write_json
    from .cli_train import resolve_config

    cfg = resolve_config(args)
    if cfg.output is None:
        cfg = cfg.replace(output=str(Path("runs") / f"mtl-report-{Path(cfg.data).name or 'data'}-{cfg.model}"))
    report, details = mtl_report(cfg, parse_seeds(args.seeds), args.metric, args.noise_band)
    print_report(report)
    for pair, c in details["gradient_cosine_last_epoch"].items():
        print(f"gradient cosine {pair} (shared parameters, last epoch): {c['mean']:+.3f}"
              + ("" if math.isnan(c["std"]) else f" ± {c['std']:.3f}"))
    if details["excluded_from_baselines"]:
        print(f"no baseline (random labels; MTL-only): {', '.join(details['excluded_from_baselines'])}")
    path = Path(args.report_json or Path(cfg.output) / "mtl_report.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(report, path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["details"] = json.loads(json.dumps(details, default=str).replace("NaN", "null"))
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"effzoo mtl-report: report written to {path}")
    return 0
