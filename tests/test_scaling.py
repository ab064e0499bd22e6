import math

import pytest

from effzoo import CompoundScaling
from effzoo.scaling import resolve_scaling, round_channels, round_repeats, round_resolution


def test_defaults_are_the_papers():
    s = CompoundScaling()
    assert s.as_tuple() == (1.2, 1.1, 1.15)
    assert s.flops_ratio == pytest.approx(1.2 * 1.1**2 * 1.15**2)


@pytest.mark.parametrize("phi", [-2.5, -1, 0, 0.5, 1, 3, 7])
def test_factors_follow_the_formula_for_any_phi(phi):
    d, w, r = CompoundScaling().factors(phi)
    assert (d, w, r) == pytest.approx((1.2**phi, 1.1**phi, 1.15**phi))


def test_factors_with_custom_coefficients():
    s = CompoundScaling(1.4, 1.2, 1.0)  # 1.4 * 1.44 = 2.016
    assert s.factors(2).depth == pytest.approx(1.96)
    assert s.factors(2).resolution == 1.0


@pytest.mark.parametrize("coeffs, word", [((0.9, 1.2, 1.2), "alpha"), ((1.2, 0.5, 1.9), "beta"), ((1.2, 1.1, 1.4), "2.846")])
def test_invalid_coefficients_are_explained(coeffs, word):
    with pytest.raises(ValueError, match=word):
        CompoundScaling(*coeffs)


def test_tolerance_is_a_parameter():
    CompoundScaling(1.2, 1.1, 1.3, tolerance=0.3)  # ratio 2.45, accepted with a wider tolerance
    with pytest.raises(ValueError, match="within"):
        CompoundScaling(1.2, 1.1, 1.3)


@pytest.mark.parametrize("phi", [math.nan, math.inf, "2", None])
def test_bad_phi(phi):
    with pytest.raises(ValueError, match="phi"):
        CompoundScaling().factors(phi)


# Official TF round_filters outputs (reference table, B0-B7 channel rows).
@pytest.mark.parametrize("chs, width, expected", [
    (32, 1.1, 32), (40, 1.1, 48), (80, 1.1, 88), (112, 1.1, 120), (1280, 1.1, 1408),
    (32, 1.2, 40), (16, 1.2, 24), (112, 1.2, 136), (320, 1.2, 384),
    (112, 1.4, 160), (192, 1.4, 272), (16, 1.8, 32), (40, 1.8, 72), (112, 4.3, 480), (320, 4.3, 1376),
])
def test_round_channels_matches_official_table(chs, width, expected):
    assert round_channels(chs, width) == expected


def test_round_channels_never_loses_more_than_ten_percent():
    for c in range(8, 600):
        for w in (0.35, 0.5, 0.75, 1.1, 1.3, 1.7):
            out = round_channels(c, w)
            assert out % 8 == 0 and out >= 8
            assert out >= 0.9 * c * w


def test_round_repeats_is_ceil():
    assert [round_repeats(n, 3.1) for n in (1, 2, 2, 3, 3, 4, 1)] == [4, 7, 7, 10, 10, 13, 4]  # B7
    assert round_repeats(1, 0.1) == 1


def test_round_resolution():
    assert round_resolution(224, 1.15) == 256
    assert round_resolution(224, 1.15**3) == 344
    assert round_resolution(32, 0.01) == 8


def test_resolve_scaling_overrides_one_dimension():
    s = resolve_scaling(phi=1, depth_multiplier=4.0)
    assert s["depth"] == 4.0 and s["width"] == pytest.approx(1.1) and s["input_resolution"] == 256
    s = resolve_scaling(resolution=448)
    assert s["resolution"] == 2.0 and s["depth"] == 1.0
    with pytest.raises(ValueError, match="phi"):
        resolve_scaling(coefficients=(1.2, 1.1, 1.15))


def test_scaling_factors_print_rounded_but_keep_full_precision():
    f = CompoundScaling(1.2, 1.1, 1.15).factors(2)
    assert repr(f) == "ScalingFactors(depth=1.44, width=1.21, resolution=1.3225)" == str(f)
    assert f.width == 1.1**2  # only the text is rounded
    assert repr(CompoundScaling().factors(0.5)) == "ScalingFactors(depth=1.09545, width=1.04881, resolution=1.07238)"
