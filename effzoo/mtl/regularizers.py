"""Structural regularizers on the stacked head matrix W (features x task outputs), MALSAR's family.

Convention (MALSAR manual §1.2, mtl.md §2): with step eta and strength rho, the proximal step is

    prox_{t Omega}(V) = argmin_W  1/2 ||W - V||_F^2 + t Omega(W),    t = eta * rho,

and `penalty(W)` returns Omega(W) at strength 1. Closed forms used here:

* L1 (lasso), Omega = ||W||_1: soft-threshold sign(v) max(|v| - t, 0).
* ridge, Omega = ||W||_F^2: W / (1 + 2t)  (note the 2: the penalty is the *squared* norm).
* elastic net, Omega = a ||W||_1 + (1-a) ||W||_F^2: soft(V, a t) / (1 + 2 (1-a) t).
* L2,1, Omega = sum_j ||w^j||_2 over rows (features): each row scaled by max(0, 1 - t/||w^j||);
  a zeroed row is a backbone feature no task uses (joint feature selection, Argyriou 2007).
* trace norm, Omega = sum of singular values: singular values soft-thresholded (low rank:
  tasks share a low-dimensional subspace of the features, Ji & Ye 2009).

Applied after `optimizer.step()` with eta = the heads' learning rate (exact for plain SGD, a
heuristic under Adam), or as a differentiable penalty added to the loss.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..models.multitask import MultiTaskModel


def check_strength(value: float, what: str = "strength") -> float:
    """A regularization strength (or step) must be a finite number >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return v


def soft_threshold(W: torch.Tensor, t: float) -> torch.Tensor:
    """Elementwise sign(w) max(|w| - t, 0): the prox of t ||.||_1."""
    return torch.sign(W) * (W.abs() - t).clamp(min=0)


class Regularizer:
    """Omega(W) and its proximal operator; subclasses implement both."""

    name: ClassVar[str] = "base"

    def penalty(self, W: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prox(self, W: torch.Tensor, t: float) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class L1(Regularizer):
    """Lasso: sparse head weights, each task picks its own features."""

    name = "l1"

    def penalty(self, W):
        return W.abs().sum()

    def prox(self, W, t):
        return soft_threshold(W, check_strength(t, "t"))


class Ridge(Regularizer):
    """Squared Frobenius norm: plain shrinkage of all head weights."""

    name = "ridge"

    def penalty(self, W):
        return W.pow(2).sum()

    def prox(self, W, t):
        return W / (1.0 + 2.0 * check_strength(t, "t"))


class ElasticNet(Regularizer):
    """a ||W||_1 + (1 - a) ||W||_F^2 with mixing `l1_ratio` = a in [0, 1]."""

    name = "elastic_net"

    def __init__(self, l1_ratio: float = 0.5) -> None:
        if not 0.0 <= float(l1_ratio) <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
        self.l1_ratio = float(l1_ratio)

    def penalty(self, W):
        return self.l1_ratio * W.abs().sum() + (1 - self.l1_ratio) * W.pow(2).sum()

    def prox(self, W, t):
        t = check_strength(t, "t")
        return soft_threshold(W, self.l1_ratio * t) / (1.0 + 2.0 * (1 - self.l1_ratio) * t)

    def __repr__(self) -> str:
        return f"ElasticNet(l1_ratio={self.l1_ratio})"


class L21(Regularizer):
    """Sum of row (feature) norms: a feature is kept or dropped for all tasks together."""

    name = "l21"

    def penalty(self, W):
        return W.norm(dim=1).sum()

    def prox(self, W, t):
        t = check_strength(t, "t")
        norms = W.norm(dim=1, keepdim=True)
        scale = (1.0 - t / norms.clamp(min=1e-30)).clamp(min=0)
        return W * scale


class TraceNorm(Regularizer):
    """Nuclear norm: pushes W towards low rank (tasks share a few feature directions)."""

    name = "trace"

    def penalty(self, W):
        return torch.linalg.svdvals(W).sum()

    def prox(self, W, t):
        t = check_strength(t, "t")
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        return (U * (S - t).clamp(min=0)) @ Vh


REGULARIZERS: dict[str, type[Regularizer]] = {
    "l1": L1, "lasso": L1,
    "ridge": Ridge, "frobenius": Ridge,
    "elastic_net": ElasticNet, "elasticnet": ElasticNet,
    "l21": L21, "l2,1": L21,
    "trace": TraceNorm, "nuclear": TraceNorm,
}  # fmt: skip


def make_regularizer(name: str | Regularizer, **kwargs: float) -> Regularizer:
    """Look a regularizer up by name (case-insensitive; see `REGULARIZERS` for names/aliases)."""
    if isinstance(name, Regularizer):
        return name
    key = str(name).lower().replace("-", "_")
    if key not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; choose from {', '.join(sorted(set(REGULARIZERS)))}")
    return REGULARIZERS[key](**kwargs)


def penalty_loss(model: MultiTaskModel, reg: str | Regularizer, strength: float) -> torch.Tensor:
    """strength * Omega(W), to add to the training loss (the non-proximal alternative)."""
    return check_strength(strength) * make_regularizer(reg).penalty(model.head_weight_matrix())


@torch.no_grad()
def apply_proximal_step(model: MultiTaskModel, reg: str | Regularizer, strength: float, lr: float) -> None:
    """W <- prox_{lr * strength * Omega}(W): call right after `optimizer.step()`.

    Biases are left alone (they select no feature and carry no shared structure).
    """
    t = check_strength(strength) * check_strength(lr, "lr")
    if t == 0:
        return
    W = model.head_weight_matrix().detach().float()
    model.set_head_weight_matrix(make_regularizer(reg).prox(W, t))


def head_learning_rate(optimizer: torch.optim.Optimizer, model: MultiTaskModel) -> float:
    """The learning rate of the param group holding the heads (the eta of the proximal step)."""
    head_ids = {id(p) for p in model.task_parameters()}
    for group in optimizer.param_groups:
        if any(id(p) in head_ids for p in group["params"]):
            return float(group["lr"])
    raise ValueError("the optimizer does not hold the model's head parameters")
