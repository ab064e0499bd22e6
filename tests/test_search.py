"""The alpha/beta/gamma grid search: enumeration, measured-MAC filtering, objective, halving, resume."""

import json

import pytest

from effzoo import CompoundScaling, create_model
from effzoo.search import Candidate, candidates, grid, halving_runs, mnas_objective, rank, successive_halving


def test_grid_respects_the_constraint_and_contains_the_papers_triple():
    points = grid(step=0.05, tolerance=0.1)
    assert (1.2, 1.1, 1.15) in points
    assert all(min(p) >= 1.0 and abs(p[0] * p[1] ** 2 * p[2] ** 2 / 2 - 1) <= 0.1 for p in points)
    assert len(grid(step=0.05, tolerance=0.02)) < len(points)
    assert (1.0, 1.0, 1.0) not in points


def test_empty_grid_says_how_to_widen_it():
    with pytest.raises(ValueError, match="grid-step|tolerance"):
        grid(step=0.3, tolerance=0.001)


def test_measured_ratio_filters_candidates_that_rounding_moves():
    kept, dropped, base = candidates("mobilenetv2_035", step=0.2, tolerance=0.1, in_chans=1, base_resolution=32,
                                     small_input=True)
    assert kept and all(abs(c.measured_ratio / 2 - 1) <= 0.1 for c in kept)
    assert all(abs(c.measured_ratio / 2 - 1) > 0.1 for c in dropped)
    # every candidate's formula ratio passed the grid filter; the measured one differs (rounding)
    assert any(abs(c.measured_ratio - c.formula_ratio) > 0.05 for c in kept + dropped)
    c = kept[0]
    model = create_model("mobilenetv2_035", in_chans=1, small_input=True, phi=1,
                         coefficients=CompoundScaling(c.alpha, c.beta, c.gamma))
    assert sum(p.numel() for p in model.parameters()) == c.params


def test_mnas_objective():
    assert mnas_objective(80.0, 400e6, 400e6) == 80.0
    assert mnas_objective(80.0, 800e6, 400e6) == pytest.approx(80.0 * 2 ** -0.07)
    with pytest.raises(ValueError):
        mnas_objective(80.0, 0, 400e6)


def make(n):
    return [Candidate(1.0 + i / 10, 1.1, 1.1, 2.0, 2.0, 100 + i, 10) for i in range(n)]


def test_successive_halving_keeps_the_best_half_and_ranks(tmp_path):
    calls = []

    def evaluate(c, epochs):
        calls.append((c.key, epochs))
        return 50 + 10 * c.alpha + epochs  # larger alpha is better here

    cands = make(4)
    ranked = successive_halving(cands, evaluate, min_epochs=1, eta=2, state_path=tmp_path / "s.json")
    assert len(calls) == 4 + 2 + 1 == halving_runs(4, 2)
    assert ranked[0].alpha == pytest.approx(1.3) and max(ranked[0].accuracy) == 4
    assert [max(c.accuracy) for c in ranked] == [4, 2, 1, 1]


def test_search_resumes_without_retraining(tmp_path):
    state = tmp_path / "state.json"
    calls = []

    def evaluate(c, epochs):
        calls.append(c.key)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-search
        return 60 + c.alpha

    with pytest.raises(KeyboardInterrupt):
        successive_halving(make(4), evaluate, state_path=state)
    assert len(json.loads(state.read_text())["results"]) == 2  # the two finished evaluations were saved
    calls.clear()
    successive_halving(make(4), lambda c, e: calls.append(c.key) or 60 + c.alpha, state_path=state)
    assert len(calls) == 4 + 2 + 1 - 2  # the two finished ones were not retrained


def test_rank_prefers_longer_budget_then_accuracy():
    a, b, c = make(3)
    a.accuracy, b.accuracy, c.accuracy = {1: 90.0}, {1: 80.0, 2: 85.0}, {1: 70.0, 2: 88.0}
    assert [x.alpha for x in rank([a, b, c])] == [c.alpha, b.alpha, a.alpha]
