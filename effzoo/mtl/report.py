"""Transfer report: does the multi-task model beat single-task baselines, per task and overall?

Input is plain numbers -- per task, one metric value per seed for the single-task (STL)
baseline and for the multi-task (MTL) model, the i-th values of both coming from the same seed
(same split, same init where shared, same budget and selection rule). Per seed s and task t:

    d_{t,s} = dir_t (M_MTL,t,s - M_STL,t,s) / |M_STL,t,s| x 100    (dir +1: higher is better)

so d > 0 always means "MTL better". Δm per seed is the mean of d_{t,s} over the included
tasks (Maninis et al. 2019; Vandenhende et al. 2021); the report gives mean ± std (ddof=1)
over seeds for every d_t and for Δm.

Transfer verdict (per task): a paired two-sided t-test on d_{t,s}. With n >= 2 seeds, mean m,
std s and half-width h = t_{(1+c)/2, n-1} s / sqrt(n) (c = confidence, 0.95 by default),

    negative if m < 0, |m| > h and |m| > noise_band;  positive if the same with m > 0;
    neutral otherwise;  undetermined with one seed (no noise estimate).

Why this rule: pairing by seed cancels what both runs of a seed share (split, data order),
so only the seed-to-seed spread of the *difference* counts as noise; the Student-t quantile is
the honest small-sample width (4.30 for 3 seeds -- a "2 std/sqrt(n)" rule would flag noise
about 1 time in 5 there). `noise_band` (in %) optionally adds a floor measured on a control
run (mtl.md E1b, where Δ should be 0), guarding against differences that are consistent but
practically negligible.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else math.nan
    return m, s


def t_quantile(q: float, df: int) -> float:
    """Student-t quantile (scipy is a dependency of scikit-learn, imported lazily: it is slow)."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def _t_pvalue(tstat: float, df: int) -> float:
    from scipy.stats import t  # deferred: slow to import (see _t_quantile)

    return float(2 * t.sf(abs(tstat), df))


@dataclass
class TaskTransfer:
    """One task's STL-vs-MTL comparison; `rel_*` are the signed relative differences d in %."""

    task: str
    direction: int
    n: int
    stl_mean: float
    stl_std: float
    mtl_mean: float
    mtl_std: float
    diff_mean: float  # raw MTL - STL in metric units (not direction-signed)
    diff_std: float
    rel_mean: float  # signed: > 0 means MTL better
    rel_std: float
    ci_half: float  # half-width of the confidence interval of rel_mean
    p_value: float
    verdict: str  # "negative" | "positive" | "neutral" | "undetermined"
    in_delta_m: bool
    rel_per_seed: list[float] = field(default_factory=list)

    @property
    def negative_transfer(self) -> bool:
        return self.verdict == "negative"


@dataclass
class TransferReport:
    tasks: list[TaskTransfer]
    delta_m_mean: float
    delta_m_std: float
    delta_m_per_seed: list[float]
    delta_m_tasks: list[str]
    seeds: list[Any]
    confidence: float
    noise_band: float
    mtl_only: dict[str, list[float]] = field(default_factory=dict)
    rule: str = "paired two-sided t-test on relative differences; flag when the CI excludes 0 and |mean| > noise_band"

    def task(self, name: str) -> TaskTransfer:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)

    @property
    def negative_tasks(self) -> list[str]:
        return [t.task for t in self.tasks if t.negative_transfer]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _values(d: Mapping[str, Sequence[float]], task: str, which: str) -> list[float]:
    xs = [float(x) for x in d[task]]
    if not xs:
        raise ValueError(f"{which} metrics of task {task!r} are empty")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"{which} metrics of task {task!r} contain NaN/inf: {xs}")
    return xs


def transfer_report(
    stl: Mapping[str, Sequence[float]],
    mtl: Mapping[str, Sequence[float]],
    directions: Mapping[str, int] | int = 1,
    *,
    exclude: Sequence[str] = (),
    seeds: Sequence[Any] | None = None,
    confidence: float = 0.95,
    noise_band: float = 0.0,
) -> TransferReport:
    """Compare per-seed metrics; see the module docstring for the formulas and the verdict rule.

    Tasks in `mtl` without a baseline (e.g. a random-label probe) are kept in `mtl_only`;
    tasks named in `exclude` are reported but left out of Δm (mtl.md: exclude random labels).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not math.isfinite(noise_band) or noise_band < 0:
        raise ValueError(f"noise_band must be >= 0 (percent), got {noise_band}")
    missing = sorted(set(stl) - set(mtl))
    if missing:
        raise ValueError(f"task(s) {missing} have STL baselines but no MTL results")
    if not stl:
        raise ValueError("no tasks to compare")
    unknown = sorted(set(exclude) - set(stl))
    if unknown:
        raise ValueError(f"exclude names unknown task(s) {unknown}")
    rows, per_seed_rel = [], {}
    n_seeds = None
    for task in stl:
        b, m = _values(stl, task, "STL"), _values(mtl, task, "MTL")
        if len(b) != len(m):
            raise ValueError(f"task {task!r}: {len(b)} STL vs {len(m)} MTL values; runs are paired by seed")
        if n_seeds is not None and len(b) != n_seeds:
            raise ValueError(f"task {task!r} has {len(b)} seeds, other tasks {n_seeds}")
        n_seeds = len(b)
        direction = directions if isinstance(directions, int) else directions.get(task)
        if direction not in (1, -1):
            raise ValueError(f"task {task!r}: direction must be +1 (higher is better) or -1, got {direction!r}")
        if any(x == 0 for x in b):
            raise ValueError(f"task {task!r}: an STL metric is 0, so the relative difference is undefined")
        rel = [direction * (mi - bi) / abs(bi) * 100.0 for bi, mi in zip(b, m)]
        per_seed_rel[task] = rel
        n = len(rel)
        rm, rs = _mean_std(rel)
        dm, ds = _mean_std([mi - bi for bi, mi in zip(b, m)])
        if n < 2:
            half, p, verdict = math.nan, math.nan, "undetermined"
        else:
            half = t_quantile((1 + confidence) / 2, n - 1) * rs / math.sqrt(n)
            p = (0.0 if rm != 0 else 1.0) if rs == 0 else _t_pvalue(rm / (rs / math.sqrt(n)), n - 1)
            beyond = abs(rm) > half and abs(rm) > noise_band
            verdict = ("negative" if rm < 0 else "positive") if beyond else "neutral"
        rows.append(TaskTransfer(task, direction, n, *_mean_std(b), *_mean_std(m), dm, ds, rm, rs, half, p,
                                 verdict, task not in exclude, rel))
    included = [t for t in stl if t not in exclude]
    if not included:
        raise ValueError("every task is excluded from Δm")
    assert n_seeds is not None
    dm_seed = [sum(per_seed_rel[t][s] for t in included) / len(included) for s in range(n_seeds)]
    seeds = list(seeds) if seeds is not None else list(range(n_seeds))
    if len(seeds) != n_seeds:
        raise ValueError(f"{len(seeds)} seed labels for {n_seeds} runs")
    mtl_only = {t: [float(x) for x in v] for t, v in mtl.items() if t not in stl}
    return TransferReport(rows, *_mean_std(dm_seed), dm_seed, included, seeds, confidence, noise_band, mtl_only)


def _pm(m: float, s: float, fmt: str = ".4g") -> str:
    return f"{m:{fmt}}" if math.isnan(s) else f"{m:{fmt}} ± {s:{fmt.lstrip('+')}}"


def render_table(report: TransferReport):  # -> rich.table.Table
    """A rich table: per-task metrics, Δ, Δ%, CI, p and verdict; Δm in the caption."""

    table = Table(title=f"Multi-task transfer ({len(report.seeds)} seed(s), {report.confidence:.0%} CI)")
    for col in ("task", "dir", "STL", "MTL", "Δ", "Δ %", "CI ±", "p", "transfer"):
        table.add_column(col, justify="left" if col in ("task", "transfer") else "right")
    style = {"negative": "bold red", "positive": "green", "neutral": "", "undetermined": "dim"}
    for t in report.tasks:
        name = t.task if t.in_delta_m else f"{t.task} (not in Δm)"
        table.add_row(name, "↑" if t.direction > 0 else "↓", _pm(t.stl_mean, t.stl_std), _pm(t.mtl_mean, t.mtl_std),
                      _pm(t.diff_mean, t.diff_std, "+.3g"), _pm(t.rel_mean, t.rel_std, "+.2f"),
                      "—" if math.isnan(t.ci_half) else f"{t.ci_half:.2f}",
                      "—" if math.isnan(t.p_value) else f"{t.p_value:.3f}",
                      f"[{style[t.verdict]}]{t.verdict}[/]" if style[t.verdict] else t.verdict)
    delta_m = _pm(report.delta_m_mean, report.delta_m_std, "+.2f")
    table.caption = f"Δm = {delta_m} % over {', '.join(report.delta_m_tasks)}"
    return table


def print_report(report: TransferReport, console: Any = None) -> None:
    """Print the table to a rich Console (stdout by default)."""

    (console or Console()).print(render_table(report))


def write_json(report: TransferReport, path: str | os.PathLike) -> None:
    """Write the report as JSON (NaN, e.g. the std of one seed, is written as null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    with open(path, "w", encoding="utf-8") as f:
        json.dump(clean(report.to_dict()), f, indent=2)
        f.write("\n")
