"""Per-task gradients on the shared parameters: the raw material of PCGrad, GradNorm and the
gradient-cosine diagnostic."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.distributed as dist


def sync_mean(t: torch.Tensor) -> torch.Tensor:
    """Average a small state tensor over DDP ranks so every rank applies the same weights."""
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def task_gradients(losses: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """(T, P) matrix of flattened gradients of each loss w.r.t. `params` (graph retained)."""
    params = list(params)
    if not params:
        raise ValueError("no shared parameters to take task gradients on")
    rows = []
    for loss in losses:
        if not loss.requires_grad:
            rows.append(torch.zeros(sum(p.numel() for p in params), device=params[0].device))
            continue
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params)]))
    return torch.stack(rows)


def gradient_cosine(losses: Mapping[str, torch.Tensor], shared: Sequence[torch.Tensor]) -> dict[str, float]:
    """Pairwise cosine of task gradients on the shared parameters, keyed "a|b".

    Negative means the tasks pull the shared weights apart (the conflict PCGrad removes; a
    persistently negative main|aux pair is a negative-transfer warning sign). Pairs involving a
    task with a zero gradient (no labels in the batch) are left out rather than reported as NaN.
    """
    names = list(losses)
    g = task_gradients([losses[n] for n in names], shared)
    norms = g.norm(dim=1)
    out = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if norms[i] > 0 and norms[j] > 0:
                out[f"{names[i]}|{names[j]}"] = float(g[i] @ g[j] / (norms[i] * norms[j]))
    return out


def pcgrad_project(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad (Yu et al. 2020) on a (T, P) gradient matrix; returns the summed update (P,).

    For each task i, visit the other tasks j in a random order and, if g_i . g_j < 0, remove
    from g_i its component along the *original* g_j: g_i <- g_i - (g_i . g_j / |g_j|^2) g_j.
    """
    t = grads.shape[0]
    projected = grads.clone()
    for i in range(t):
        order = torch.randperm(t, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            nsq = grads[j] @ grads[j]
            if dot < 0 and nsq > 0:
                projected[i] -= dot / nsq * grads[j]
    return projected.sum(0)
