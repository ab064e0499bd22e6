"""Small building blocks shared by every family: stochastic depth and squeeze-and-excitation."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch for whole samples.

    Each sample keeps the branch with probability 1 - p and is rescaled by 1 / (1 - p) so the
    expectation is unchanged, matching the official `drop_connect` and torchvision's
    `StochasticDepth(p, "row")`. The identity path always survives, so a dropped block is a no-op.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018) as EfficientNet uses it: pool, reduce, swish, expand, sigmoid gate.

    `reduced_chs` is computed by the caller from the *block input* channels (in_chs * 0.25), not
    from the expanded width, exactly as the official implementation does.
    """

    def __init__(self, chs: int, reduced_chs: int, act_layer: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, reduced_chs, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, chs, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act1(self.conv_reduce(s)))
        return x * self.gate(s)


def drop_path_rates(total_blocks: int, drop_path_rate: float) -> list[float]:
    """Stochastic-depth rate per block, growing linearly from 0 at the first block to rate*(N-1)/N.

    Counting over the *scaled* block total keeps the last rate below `drop_path_rate` at any
    depth (tensorflow/tensorflow#40210: counting the unscaled total pushed it past 1).
    """
    return [drop_path_rate * i / total_blocks for i in range(total_blocks)]
