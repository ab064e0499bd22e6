"""The alpha/beta/gamma grid search: enumeration, measured-MAC filtering, objective, halving, resume."""

import json
import math

import pytest

from effzoo import CompoundScaling, create_model
from effzoo.search import (Candidate, candidates, flops_shares, grid, halving_runs, merge_same_networks, mnas_objective,
                           rank, spread_order, successive_halving)


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


def test_triples_that_round_to_one_network_are_merged_and_trained_once():
    # At a 32 px base, gamma 1.1 rounds 35.2 px back to 32 px (multiples of 8): (1.8, 1, 1.1) is the
    # network (1.8, 1, 1); at a 64 px base 70.4 px rounds to 72 px and the two differ.
    points = [(1.8, 1.0, 1.0), (1.8, 1.0, 1.1), (1.2, 1.1, 1.15)]
    kw = dict(tolerance=0.1, in_chans=1, small_input=True, points=points)
    small, dropped, _ = candidates("mobilenetv2_035", base_resolution=32, **kw)
    by_key = {c.key: c for c in small + dropped}
    a, b, paper = by_key["1.8000,1.0000,1.0000"], by_key["1.8000,1.0000,1.1000"], by_key["1.2000,1.1000,1.1500"]
    assert a.signature == b.signature != paper.signature and a.macs == b.macs
    kept, merged = merge_same_networks([a, b, paper])
    # the representative is the triple whose formula ratio is nearest 2: b's 2.178 (a's is 1.8)
    assert [c.key for c in kept] == [b.key, paper.key] and merged == [a]
    assert b.same_network_as == [a.key] and paper.same_network_as == []
    large, dropped, _ = candidates("mobilenetv2_035", base_resolution=64, **kw)
    sig = {c.key: c.signature for c in large + dropped}
    assert sig[a.key] != sig[b.key]


def test_a_result_of_an_identical_network_is_reused(tmp_path):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"results": {"9.0000,1.1000,1.1000": {"1": 77.0}}}))
    (c,) = make(1)
    c.same_network_as = ["9.0000,1.1000,1.1000"]
    successive_halving([c], lambda *_: pytest.fail("retrained an identical network"), state_path=state)
    assert c.accuracy == {1: 77.0}


def _min_pairwise(cands):
    return min(math.dist(flops_shares(x), flops_shares(y)) for i, x in enumerate(cands) for y in cands[i + 1:])


def test_spread_order_starts_balanced_and_covers_the_grid():
    cands = [Candidate(a, b, g, a * b * b * g * g, a * b * b * g * g) for a, b, g in grid(step=0.05, tolerance=0.05)]
    order = spread_order(cands)
    assert sorted(c.key for c in order) == sorted(c.key for c in cands)
    shares = [flops_shares(c) for c in cands]
    assert all(sum(s) == pytest.approx(1.0) for s in shares)
    balanced = min(math.dist(s, (1 / 3,) * 3) for s in shares)
    assert math.dist(flops_shares(order[0]), (1 / 3,) * 3) == pytest.approx(balanced)
    # the first four spread out far more than the four closest to the target ratio (the old order)
    closest = sorted(cands, key=lambda c: abs(c.measured_ratio - 2))[:4]
    assert _min_pairwise(order[:4]) > 2 * _min_pairwise(closest)
    assert {max(range(3), key=flops_shares(c).__getitem__) for c in order[:4]} == {0, 1, 2}


def test_a_ranking_of_noise_names_no_winner():
    from effzoo.search import chance_band, near_chance

    chance, band = chance_band(10, 269)  # digits' val split: 10 classes
    assert chance == pytest.approx(10.0) and 15 < band < 16  # 3 binomial sigmas: 5.5 points
    assert near_chance([11.2, 10.4, 9.7], 10, 269)  # the measured 4-minute search: one epoch each
    assert not near_chance([11.2, 42.0], 10, 269)
