"""Finding alpha, beta, gamma: the EfficientNet paper's grid search at phi = 1, as a tool.

Step 1 of the paper (Section 3.3): fix phi = 1 (about twice the baseline's MACs), enumerate
(alpha, beta, gamma) >= 1 on a grid with alpha * beta^2 * gamma^2 ~= 2, train each scaled
baseline briefly with one recipe and seed, and keep the best. The formula's ratio is not the real
one (channels round to 8, blocks by ceil, resolution to 8 px), so each candidate's MACs are
*measured* and candidates whose measured ratio strays beyond the tolerance are dropped. Ranking
is by validation accuracy and by the MnasNet objective ACC * (MACs / T)^w (w = -0.07).

Training is injected (`evaluate_fn(candidate, epochs) -> val accuracy`), so the search logic is
testable without training; successive halving spends the budget on promising candidates and a
JSON state file makes the search resumable (finished evaluations are never repeated).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from .artifacts.atomic import atomic_write
from .models import create_model
from .scaling import CompoundScaling, round_resolution


@dataclass
class Candidate:
    alpha: float
    beta: float
    gamma: float
    formula_ratio: float
    measured_ratio: float | None = None
    macs: int | None = None
    params: int | None = None
    accuracy: dict[int, float] = field(default_factory=dict)  # epochs -> val top-1 (%)
    # Rounding (channels to 8, blocks by ceil, resolution to 8 px) maps nearby coefficients to the
    # same network; `signature` identifies the network, `same_network_as` lists the keys it stands for.
    signature: str | None = None
    same_network_as: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.alpha:.4f},{self.beta:.4f},{self.gamma:.4f}"

    @property
    def best_accuracy(self) -> float | None:
        """Accuracy at the largest budget this candidate was trained with (what halving compares)."""
        return self.accuracy[max(self.accuracy)] if self.accuracy else None


def grid(step: float = 0.05, target: float = 2.0, tolerance: float = 0.1, max_value: float = 2.0) -> list[tuple[float, float, float]]:
    """All (alpha, beta, gamma) >= 1 on a `step` grid with alpha * beta^2 * gamma^2 within `tolerance` of `target`."""
    if not 0 < step <= 1:
        raise ValueError(f"grid step must be in (0, 1], got {step}")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    n = int(round((max_value - 1.0) / step))
    values = [round(1.0 + i * step, 6) for i in range(n + 1)]
    out = [(a, b, g) for a in values for b in values for g in values
           if abs(a * b * b * g * g / target - 1.0) <= tolerance]
    if not out:
        raise ValueError(
            f"no (alpha, beta, gamma) on a {step} grid has alpha*beta^2*gamma^2 within {tolerance:.0%} of {target}: "
            f"use a finer --grid-step (e.g. {step / 2:g}) or a larger --tolerance"
        )
    return out


def _count_macs(model: torch.nn.Module, size: tuple[int, int, int]) -> int:
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *size, device="meta"))
    return counter.get_total_flops() // 2


def _build(family: str, scaling: CompoundScaling | None, phi: float, in_chans: int,
           base_resolution: int | None, **model_kwargs) -> tuple[torch.nn.Module, int]:
    kwargs = dict(model_kwargs, in_chans=in_chans, phi=phi)
    if scaling is not None:
        kwargs["coefficients"] = scaling
    with torch.device("meta"):
        model = create_model(family, **kwargs)
    res = model.pretrained_cfg["input_size"][-1]
    if base_resolution is not None:
        res = round_resolution(base_resolution, model.pretrained_cfg["scaling"]["resolution"])
    return model, res


def network_signature(model: torch.nn.Module, resolution: int) -> str:
    """A short hash of the input resolution and every parameter's name and shape.

    Two scaled models with equal signatures have the same depth per stage, the same widths and the
    same input size: the same network, which trains to the same result with the same seed.
    """
    text = f"{resolution}|" + ";".join(f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters())
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _measure_network(family: str, scaling: CompoundScaling | None, phi: float, in_chans: int,
                     base_resolution: int | None, **model_kwargs) -> tuple[int, int, str]:
    model, res = _build(family, scaling, phi, in_chans, base_resolution, **model_kwargs)
    params = sum(p.numel() for p in model.parameters())
    return _count_macs(model, (in_chans, res, res)), params, network_signature(model, res)


def measure(family: str, scaling: CompoundScaling | None, phi: float, in_chans: int = 3,
            base_resolution: int | None = None, **model_kwargs) -> tuple[int, int]:
    """(MACs, params) of `family` scaled by `phi` with `scaling`, counted on the meta device (no compute).

    `base_resolution` replaces the default 224 px by the data's base resolution (e.g. 32 px).
    """
    return _measure_network(family, scaling, phi, in_chans, base_resolution, **model_kwargs)[:2]


def candidates(family: str, *, step: float = 0.05, target: float = 2.0, tolerance: float = 0.1, in_chans: int = 3,
               base_resolution: int | None = None, points: list[tuple[float, float, float]] | None = None,
               **model_kwargs) -> tuple[list[Candidate], list[Candidate], int]:
    """Grid candidates (or the given `points`) with measured MACs: (kept, dropped by measured ratio, baseline MACs)."""
    base_macs, _ = measure(family, None, 0, in_chans, base_resolution, **model_kwargs)
    kept, dropped = [], []
    for a, b, g in points if points is not None else grid(step, target, tolerance):
        scaling = CompoundScaling(a, b, g, target=target, tolerance=tolerance)
        macs, params, signature = _measure_network(family, scaling, 1, in_chans, base_resolution, **model_kwargs)
        c = Candidate(a, b, g, scaling.flops_ratio, macs / base_macs, macs, params, signature=signature)
        (kept if abs(c.measured_ratio / target - 1.0) <= tolerance else dropped).append(c)
    if not kept:
        raise ValueError(
            f"all {len(dropped)} grid candidates measured outside {tolerance:.0%} of {target}x the baseline MACs "
            f"(rounding at this resolution); widen --tolerance"
        )
    return kept, dropped, base_macs


def merge_same_networks(cands: list[Candidate], target: float = 2.0) -> tuple[list[Candidate], list[Candidate]]:
    """One candidate per distinct network: (representatives, the others).

    Training two coefficient triples that round to the same network spends the budget twice on
    one result (and shows it twice in the ranking). The representative is the triple whose formula
    ratio is closest to the target; the others are listed in its `same_network_as`.
    """
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        groups.setdefault(c.signature or c.key, []).append(c)
    kept, merged = [], []
    for members in groups.values():
        members = sorted(members, key=lambda c: (abs(c.formula_ratio - target), c.key))
        head, rest = members[0], members[1:]
        head.same_network_as = [c.key for c in rest]
        kept.append(head)
        merged.extend(rest)
    return kept, merged


def flops_shares(c: Candidate) -> tuple[float, float, float]:
    """How the candidate splits its MAC growth: (ln a, 2 ln b, 2 ln g) / ln(a b^2 g^2); sums to 1."""
    parts = (math.log(c.alpha), 2 * math.log(c.beta), 2 * math.log(c.gamma))
    total = sum(parts) or 1.0
    return parts[0] / total, parts[1] / total, parts[2] / total


def spread_order(cands: list[Candidate], target: float = 2.0) -> list[Candidate]:
    """Order candidates so that any prefix covers the grid: the most balanced first, then farthest-point.

    A budget or --max-candidates trains a prefix of this order. Sorting by closeness to the target
    ratio instead clusters that prefix in one corner (measured: the first 3 of 8 all had beta = 1).
    Distances are between FLOP shares, i.e. how each candidate spends its 2x between depth, width
    and resolution; ties go to the measured ratio closest to the target.
    """
    if not cands:
        return []

    def dist(x: Candidate, y: Candidate) -> float:
        return math.dist(flops_shares(x), flops_shares(y))

    def closeness(c: Candidate) -> float:
        return abs((c.measured_ratio if c.measured_ratio is not None else c.formula_ratio) - target)

    third = (1 / 3, 1 / 3, 1 / 3)
    rest = sorted(cands, key=lambda c: (round(math.dist(flops_shares(c), third), 9), closeness(c), c.key))
    order = [rest.pop(0)]
    nearest = {c.key: dist(c, order[0]) for c in rest}
    while rest:
        nxt = max(rest, key=lambda c: (round(nearest[c.key], 9), -closeness(c)))
        rest.remove(nxt)
        order.append(nxt)
        for c in rest:
            nearest[c.key] = min(nearest[c.key], dist(c, nxt))
    return order


def mnas_objective(accuracy: float, macs: float, target_macs: float, w: float = -0.07) -> float:
    """MnasNet's ACC(m) * (FLOPS(m) / T)^w: trades accuracy for compute around the target T."""
    if macs <= 0 or target_macs <= 0:
        raise ValueError("MACs and the target must be positive")
    return accuracy * (macs / target_macs) ** w


def successive_halving(cands: list[Candidate], evaluate_fn: Callable[[Candidate, int], float], *, min_epochs: int = 1,
                       eta: int = 2, max_epochs: int | None = None, state_path: str | Path | None = None,
                       budget_evaluations: int | None = None) -> list[Candidate]:
    """Train all candidates for `min_epochs`, keep the best 1/eta, multiply epochs by eta, repeat.

    Each finished (candidate, epochs) result is written to `state_path` at once (atomically), and a
    rerun with the same state file skips it. Returns candidates ranked by their last accuracy.
    """
    if eta < 2 or min_epochs < 1:
        raise ValueError(f"eta must be >= 2 and min_epochs >= 1, got eta={eta}, min_epochs={min_epochs}")
    done = _load_state(state_path)
    alive, epochs, spent = list(cands), min_epochs, 0
    while alive:
        for c in alive:
            for key in [*c.same_network_as, c.key]:  # an identical network's result is this one's
                c.accuracy.update(done.get(key, {}))
            if epochs in c.accuracy:
                continue
            if budget_evaluations is not None and spent >= budget_evaluations:
                break
            c.accuracy[epochs] = float(evaluate_fn(c, epochs))
            spent += 1
            done.setdefault(c.key, {})[epochs] = c.accuracy[epochs]
            _save_state(state_path, done)
        finished = [c for c in alive if epochs in c.accuracy]
        if len(finished) <= 1 or (max_epochs is not None and epochs * eta > max_epochs) or len(finished) < len(alive):
            break
        finished.sort(key=lambda c: -c.accuracy[epochs])
        alive, epochs = finished[: max(1, len(finished) // eta)], epochs * eta
    return rank(cands)


def rank(cands: list[Candidate]) -> list[Candidate]:
    """Best first: more training epochs reached, then higher accuracy at that budget, then fewer MACs."""
    trained = [c for c in cands if c.accuracy]
    return sorted(trained, key=lambda c: (-max(c.accuracy), -(c.best_accuracy or 0.0), c.macs or 0))


def _load_state(path: str | Path | None) -> dict[str, dict[int, float]]:
    if path is None or not Path(path).exists():
        return {}
    raw = json.loads(Path(path).read_text())
    return {k: {int(e): float(a) for e, a in v.items()} for k, v in raw.get("results", {}).items()}


def _save_state(path: str | Path | None, done: dict[str, dict[int, float]]) -> None:
    if path is not None:
        text = json.dumps({"results": {k: {str(e): a for e, a in v.items()} for k, v in done.items()}}, indent=1)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def candidate_row(c: Candidate, target_macs: float, w: float = -0.07) -> dict:
    row = asdict(c)
    row["accuracy"] = {str(k): v for k, v in c.accuracy.items()}
    row["best_accuracy"] = c.best_accuracy
    row["objective"] = mnas_objective(c.best_accuracy, c.macs, target_macs, w) if c.best_accuracy is not None else None
    row["coefficients_arg"] = f"{c.alpha:g},{c.beta:g},{c.gamma:g}"
    row["flops_shares"] = [round(x, 3) for x in flops_shares(c)]
    return row


def halving_runs(n: int, eta: int = 2) -> int:
    """Training runs successive halving makes for n candidates (n + n/eta + ... + 1), for budget checks."""
    runs, alive = 0, n
    while alive > 1:
        runs, alive = runs + alive, alive // eta
    return runs + (1 if n else 0)


def chance_band(num_classes: int, num_val: int, sigmas: float = 3.0) -> tuple[float, float]:
    """Top-1 (percent) of guessing among `num_classes`, and the highest top-1 that is still within `sigmas`
    binomial standard deviations of it on `num_val` validation images."""
    p = 1.0 / max(num_classes, 1)
    return 100 * p, 100 * (p + sigmas * math.sqrt(p * (1 - p) / max(num_val, 1)))


def near_chance(top1_percent: Sequence[float], num_classes: int, num_val: int) -> bool:
    """True when no trained candidate is distinguishable from guessing: ranking them would name a
    winner by noise (measured: `effzoo search --data digits --budget-minutes 4` trained three candidates
    for one epoch each, all at 11.2% or less, chance being 10%)."""
    return all(a <= chance_band(num_classes, num_val)[1] for a in top1_percent)
