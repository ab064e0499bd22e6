"""Compound scaling (Tan & Le, EfficientNet, ICML 2019, Eq. 3) and the rounding rules that make it concrete.

One rule scales every family in the zoo:

    depth d = alpha ** phi,  width w = beta ** phi,  resolution r = gamma ** phi,
    with alpha * beta**2 * gamma**2 ~= 2 and alpha, beta, gamma >= 1,

so each +1 of phi roughly doubles the multiply-adds (MACs grow as d * w**2 * r**2).

Why the published B1-B7 are *not* alpha**phi: the official TF code (`efficientnet_params`) lists
hand-set (width, depth, resolution) per model, e.g. B7 = (2.0, 3.1, 600) where the formula gives
(1.95, 3.58, 596), and B1 keeps width 1.0 where the formula gives 1.1. The authors tuned the
presets after the grid search ("the image size scaling rule is highly heuristic", M. Tan,
google/automl#912). effzoo therefore keeps the presets as a named table (`efficientnet_b0..b8`)
and, separately, computes `efficientnet` + `phi` exactly from the formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

# The paper's grid-search result at phi = 1 (Section 3.3).
DEFAULT_COEFFICIENTS = (1.2, 1.1, 1.15)


class ScalingFactors(NamedTuple):
    """Multipliers for one phi; unpacks as `depth, width, resolution = factors`."""

    depth: float
    width: float
    resolution: float

    def __repr__(self) -> str:
        # Powers like 1.1**2 print as 1.2100000000000002; 6 significant digits read as the paper's numbers.
        # Only the text is rounded: the fields keep full precision for the arithmetic built on them.
        return f"ScalingFactors(depth={self.depth:.6g}, width={self.width:.6g}, resolution={self.resolution:.6g})"


@dataclass(frozen=True)
class CompoundScaling:
    """The coefficients (alpha, beta, gamma) of compound scaling, validated.

    `target` is the MAC growth per unit of phi (2 in the paper) and `tolerance` the relative
    distance from it that `alpha * beta**2 * gamma**2` may have (the paper's own triple gives
    1.92, 4% under 2).
    """

    alpha: float = DEFAULT_COEFFICIENTS[0]
    beta: float = DEFAULT_COEFFICIENTS[1]
    gamma: float = DEFAULT_COEFFICIENTS[2]
    target: float = 2.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "target", "tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"CompoundScaling.{name} must be a finite number, got {value!r}")
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 1.0:
                raise ValueError(
                    f"CompoundScaling.{name}={getattr(self, name)} is below 1: a coefficient < 1 would "
                    f"shrink that dimension as phi grows. Use values >= 1 (paper: alpha=1.2, beta=1.1, gamma=1.15)."
                )
        if self.target <= 1.0 or self.tolerance < 0:
            raise ValueError(f"target must be > 1 and tolerance >= 0, got target={self.target}, tolerance={self.tolerance}")
        ratio = self.flops_ratio
        if abs(ratio / self.target - 1.0) > self.tolerance:
            raise ValueError(
                f"alpha * beta^2 * gamma^2 = {self.alpha} * {self.beta}^2 * {self.gamma}^2 = {ratio:.3f}, "
                f"more than {self.tolerance:.0%} away from the target {self.target}: each step of phi would not "
                f"multiply the MACs by ~{self.target}. Choose coefficients with alpha*beta^2*gamma^2 within "
                f"[{self.target * (1 - self.tolerance):.2f}, {self.target * (1 + self.tolerance):.2f}] "
                f"(e.g. 1.2, 1.1, 1.15), or pass tolerance= to accept it."
            )

    @classmethod
    def from_tuple(cls, coefficients: "tuple[float, float, float] | CompoundScaling | None", **kwargs) -> "CompoundScaling":
        """Accept None (paper defaults), an existing instance, or an (alpha, beta, gamma) triple."""
        if coefficients is None:
            return cls(**kwargs)
        if isinstance(coefficients, CompoundScaling):
            return coefficients
        try:
            alpha, beta, gamma = (float(c) for c in coefficients)
        except (TypeError, ValueError):
            raise ValueError(
                f"coefficients must be three numbers (alpha, beta, gamma), got {coefficients!r}"
            ) from None
        return cls(alpha, beta, gamma, **kwargs)

    @property
    def flops_ratio(self) -> float:
        """MAC growth per unit of phi predicted by the formula (d * w^2 * r^2)."""
        return self.alpha * self.beta**2 * self.gamma**2

    def factors(self, phi: float) -> ScalingFactors:
        """Depth, width and resolution multipliers for any real phi (negative phi shrinks)."""
        if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi):
            raise ValueError(f"phi must be a finite number, got {phi!r}")
        return ScalingFactors(self.alpha**phi, self.beta**phi, self.gamma**phi)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Scale a channel count and round it to a multiple of `divisor`, never losing more than 10%.

    Same rule as the official `round_filters`: round half up to the divisor, floor at the
    divisor, and add one divisor back if rounding down cost more than (1 - round_limit).
    Multiples of 8 keep vectorized kernels and tensor cores fully used.
    """
    scaled = channels * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < round_limit * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, multiplier: float = 1.0) -> int:
    """Scale a stage's block count by ceil, as the official code does (never rounds a stage away)."""
    return int(math.ceil(repeats * multiplier))


def round_resolution(base: int, multiplier: float = 1.0, divisor: int = 8) -> int:
    """Scale an input resolution and round it to the nearest multiple of `divisor` (at least one)."""
    return max(divisor, int(round(base * multiplier / divisor)) * divisor)


def check_multipliers(depth: float, width: float, resolution: float, smallest_channels: int) -> None:
    """Reject multipliers that would scale a model out of existence (zero width or depth)."""
    for name, value in (("depth", depth), ("width", width), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} multiplier must be a positive finite number, got {value!r}")
    if width * smallest_channels < 1.0:
        raise ValueError(
            f"width multiplier {width:.4g} scales the narrowest layer ({smallest_channels} channels) to "
            f"{width * smallest_channels:.2f} channels, i.e. to nothing; the rounding floor would invent "
            f"channels that the scaling rule did not ask for. Use a larger phi (or width multiplier >= "
            f"{1.0 / smallest_channels:.3g})."
        )


def resolve_scaling(
    *,
    phi: float | None = None,
    coefficients: "tuple[float, float, float] | CompoundScaling | None" = None,
    depth_multiplier: float | None = None,
    width_multiplier: float | None = None,
    resolution: int | None = None,
    base_resolution: int = 224,
) -> dict:
    """Turn the user's scaling arguments into one record (stored in `pretrained_cfg["scaling"]`).

    `phi` (+ optional `coefficients`) gives all three multipliers; `depth_multiplier`,
    `width_multiplier` and `resolution` (in pixels) override one dimension each, which is how
    the paper's single-dimension baselines (Figure 3, Table 3) are built.
    """
    if coefficients is not None and phi is None:
        raise ValueError("coefficients= only has an effect together with phi=; pass phi (e.g. phi=1)")
    scaling = CompoundScaling.from_tuple(coefficients) if phi is not None else None
    depth, width, res_mult = scaling.factors(phi) if scaling is not None else (1.0, 1.0, 1.0)
    depth = depth if depth_multiplier is None else depth_multiplier
    width = width if width_multiplier is None else width_multiplier
    if resolution is None:
        pixels = round_resolution(base_resolution, res_mult)
    else:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
            raise ValueError(f"resolution must be an integer number of pixels >= 8, got {resolution!r}")
        pixels, res_mult = resolution, resolution / base_resolution
    return {
        "phi": phi,
        "coefficients": list(scaling.as_tuple()) if scaling is not None else None,
        "depth": float(depth),
        "width": float(width),
        "resolution": float(res_mult),
        "base_resolution": base_resolution,
        "input_resolution": pixels,
    }
