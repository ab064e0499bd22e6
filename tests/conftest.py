import os

import pytest
import torch

# Two cores: more threads than that only adds contention to every test.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def randomize_(state_dict: dict) -> dict:
    """Give every tensor random but well-conditioned values, so output comparisons mean something
    (a freshly initialized EfficientNet outputs ~1e-14, which any two models agree on)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in state_dict.items():
        if not v.is_floating_point():
            out[k] = v
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.ndim == 1:  # BN affine, biases, running means
            out[k] = torch.randn(v.shape, generator=g) * 0.1 + (1.0 if k.endswith("weight") else 0.0)
        else:
            fan_in = v[0].numel()
            out[k] = torch.randn(v.shape, generator=g) / fan_in**0.5
    return out


@pytest.fixture
def randomize():
    return randomize_
