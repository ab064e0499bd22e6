"""Task-loss weighting: fixed, uncertainty (Kendall), DWA, GradNorm, and PCGrad gradient surgery.

One interface for the training step (a `Weighting` is an `nn.Module`; make it a submodule of
the LightningModule so its state is checkpointed and, for uncertainty weighting, its
parameters reach the optimizer -- without weight decay):

* Loss-level methods (``gradient_level = False``: fixed, uncertainty, dwa, gradnorm) work with
  Lightning's **automatic optimization**::

      losses = multitask_losses(model(x), y, tasks)
      present = {k: c > 0 for k, c in label_counts(y, tasks).items()}
      total = weighting.combine(losses, model.last_shared_parameters(), present)
      self.log_dict({f"weight/{k}": v for k, v in weighting.task_weights().items()})
      return total
      # and in on_train_epoch_end: weighting.epoch_end()   (DWA; a no-op for the others)

  GradNorm needs the `shared` argument (the last shared layer); the others ignore it.
* Gradient-level methods (``gradient_level = True``: pcgrad) need **manual optimization**
  (``self.automatic_optimization = False``)::

      opt.zero_grad(); weighting.backward(losses, model.shared_parameters(), present,
                                          backward_fn=self.manual_backward); opt.step()

  `backward` works for every method, so manual optimization can use any of them. PCGrad's
  per-task gradients are taken with `torch.autograd.grad` and written into `.grad` of the
  shared parameters, which bypasses DDP's gradient all-reduce and AMP's GradScaler: use it
  with 32-bit or bf16-mixed precision on one device.

`present` (task -> bool, from `label_counts`) marks tasks labelled in the batch; absent tasks
must not move learnable weights (their loss is 0 but their regularizer term is not).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from .gradients import pcgrad_project, sync_mean, task_gradients
from ..tasks import TaskSpec

Losses = Mapping[str, torch.Tensor]


class Weighting(nn.Module):
    """Base class: turns {task: loss} into a total (or into gradients, for gradient surgery)."""

    name: ClassVar[str] = "base"
    gradient_level: ClassVar[bool] = False

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a weighting needs at least one task")
        self.task_names = [t.name for t in tasks]
        self.register_buffer("spec_weights", torch.tensor([t.weight for t in tasks], dtype=torch.float32))

    def _stack(self, losses: Losses) -> torch.Tensor:
        if set(losses) != set(self.task_names):
            raise ValueError(f"losses for {sorted(losses)} but the weighting was built for {sorted(self.task_names)}")
        return torch.stack([losses[n].float() for n in self.task_names])

    def _present(self, present: Mapping[str, object] | None, device: torch.device) -> torch.Tensor:
        if present is None:
            return torch.ones(len(self.task_names), dtype=torch.bool, device=device)
        return torch.stack([torch.as_tensor(present[n], device=device).bool().reshape(()) for n in self.task_names])

    def current_weights(self) -> torch.Tensor:
        """Per-task multipliers of the losses, in task order."""
        return self.spec_weights

    def task_weights(self) -> dict[str, float]:
        """{task: weight} for logging."""
        return {n: float(w) for n, w in zip(self.task_names, self.current_weights().detach().cpu())}

    def combine(self, losses: Losses, shared: Sequence[torch.Tensor] | None = None,
                present: Mapping[str, object] | None = None) -> torch.Tensor:
        """Weighted total loss (for automatic optimization)."""
        L = self._stack(losses)
        return (self.current_weights().to(L.device) * L).sum()

    def backward(self, losses: Losses, shared: Sequence[torch.Tensor] | None = None,
                 present: Mapping[str, object] | None = None,
                 backward_fn: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """Populate `.grad` (for manual optimization); returns the detached total for logging."""
        total = self.combine(losses, shared, present)
        (backward_fn or torch.Tensor.backward)(total)
        return total.detach()

    def epoch_end(self, mean_losses: Mapping[str, float] | None = None) -> None:
        """Called once per training epoch; only epoch-based methods (DWA) act on it."""


class FixedWeighting(Weighting):
    """L = sum_t w_t L_t with the weights from the task specs."""

    name = "fixed"


class UncertaintyWeighting(Weighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Learns s_t = log sigma_t^2 with the main optimizer. `form="simple"` (default): L = sum_t
    exp(-s_t) L_t + s_t, the common single-form variant (optimum s_t = log L_t, so the weighted
    loss of each task tends to 1). `form="kendall"`: the paper's per-kind forms, exp(-s)L + s/2
    for classification/multi-label and exp(-s)L/2 + s/2 for regression. The total can be
    negative (the s terms); that is expected. Absent tasks contribute neither term.
    """

    name = "uncertainty"

    def __init__(self, tasks: Sequence[TaskSpec], form: str = "simple", init: float = 0.0) -> None:
        super().__init__(tasks)
        if form not in ("simple", "kendall"):
            raise ValueError(f"form must be 'simple' or 'kendall', got {form!r}")
        self.form = form
        self.log_vars = nn.Parameter(torch.full((len(tasks),), float(init)))
        reg = [t.kind == "regression" and form == "kendall" for t in tasks]
        self.register_buffer("loss_scale", torch.tensor([0.5 if r else 1.0 for r in reg]))
        self.register_buffer("reg_scale", torch.tensor([0.5 if form == "kendall" else 1.0] * len(tasks)))

    def current_weights(self) -> torch.Tensor:
        return self.loss_scale * torch.exp(-self.log_vars)

    def combine(self, losses, shared=None, present=None):
        L = self._stack(losses)
        terms = self.current_weights() * L + self.reg_scale * self.log_vars
        return torch.where(self._present(present, L.device), terms, torch.zeros_like(terms)).sum()


class DWAWeighting(Weighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

    w_t = T exp(r_t / tau) / sum_i exp(r_i / tau), r_t = L_t(k-1) / L_t(k-2) from epoch-mean
    losses; weights are 1 for the first two epochs (no ratio yet). `combine` accumulates the
    detached per-task losses of batches where the task is present; `epoch_end` closes the epoch
    (or takes externally synced means). A task unseen in an epoch keeps ratio 1.
    """

    name = "dwa"

    def __init__(self, tasks: Sequence[TaskSpec], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        t = len(tasks)
        self.register_buffer("weights", torch.ones(t))
        self.register_buffer("loss_sum", torch.zeros(t))
        self.register_buffer("loss_count", torch.zeros(t))
        self.register_buffer("history", torch.full((2, t), math.nan))  # [L(k-2), L(k-1)]
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))

    def current_weights(self) -> torch.Tensor:
        return self.weights

    def combine(self, losses, shared=None, present=None):
        L = self._stack(losses)
        if self.training and torch.is_grad_enabled():
            p = self._present(present, L.device).float()
            self.loss_sum += (L.detach() * p).to(self.loss_sum.device)
            self.loss_count += p.to(self.loss_count.device)
        return (self.weights.to(L.device).clone() * L).sum()

    def epoch_end(self, mean_losses=None):
        if mean_losses is not None:
            means = torch.tensor([float(mean_losses.get(n, math.nan)) for n in self.task_names])
        else:
            sums, counts = sync_mean(self.loss_sum), sync_mean(self.loss_count)
            means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, math.nan))
        self.history[0] = self.history[1]
        self.history[1] = means.to(self.history.device)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        self.epochs += 1
        if int(self.epochs) >= 2:
            r = self.history[1] / self.history[0].clamp(min=1e-12)
            r = torch.where(torch.isfinite(r), r, torch.ones_like(r))
            self.weights.copy_(len(self.task_names) * torch.softmax(r / self.temperature, dim=0))


class GradNormWeighting(Weighting):
    """GradNorm (Chen et al., ICML 2018) on the last shared layer W.

    G_i = w_i ||grad_W L_i||, r_i = (L_i/L_i(0)) / mean_j (L_j/L_j(0)), target G_bar r_i^alpha
    held constant, L_grad = sum_i |G_i - target_i|. Because the target is constant and
    ||grad_W L_i|| does not depend on w_i, dL_grad/dw_i = sign(G_i - target_i) ||grad_W L_i||:
    no double backward is needed. The weights take a plain SGD step of size `lr` (they are a
    buffer, not a Parameter, so the main optimizer leaves them alone), stay >= `min_weight`,
    and are renormalized to sum to T. They start at the spec weights rescaled to sum T;
    L_i(0) is the first loss seen for task i. The returned total uses the pre-update weights.
    """

    name = "gradnorm"

    def __init__(self, tasks: Sequence[TaskSpec], alpha: float = 1.5, lr: float = 0.025,
                 min_weight: float = 1e-3) -> None:
        super().__init__(tasks)
        if alpha < 0 or lr <= 0:
            raise ValueError(f"need alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}")
        self.alpha, self.lr, self.min_weight = float(alpha), float(lr), float(min_weight)
        w = self.spec_weights.clone()
        if w.sum() <= 0:
            raise ValueError("GradNorm needs at least one task with a positive weight")
        self.register_buffer("weights", w * len(tasks) / w.sum())
        self.register_buffer("initial_losses", torch.full((len(tasks),), math.nan))
        self.last_grad_norms: dict[str, float] = {}

    def current_weights(self) -> torch.Tensor:
        return self.weights

    def combine(self, losses, shared=None, present=None):
        L = self._stack(losses)
        w = self.weights.to(L.device).clone()  # a copy: the buffer is updated in place below
        total = (w * L).sum()
        if not (self.training and torch.is_grad_enabled()):
            return total
        if shared is None:
            raise ValueError("GradNorm needs the last shared layer: combine(losses, model.last_shared_parameters())")
        g = task_gradients([losses[n] for n in self.task_names], shared).norm(dim=1).float()
        p = self._present(present, L.device) & (g > 0)
        L0 = self.initial_losses.to(L.device)
        L0 = torch.where(torch.isnan(L0) & p, L.detach(), L0)
        self.initial_losses.copy_(L0)
        active = p & (L0 > 0)
        n_active = active.sum().clamp(min=1)
        G = w * g
        G_bar = torch.where(active, G, torch.zeros_like(G)).sum() / n_active
        ratio = torch.where(active, L.detach() / L0.clamp(min=1e-12), torch.zeros_like(L))
        r = ratio / (ratio.sum() / n_active).clamp(min=1e-12)
        target = G_bar * r.pow(self.alpha)
        grad_w = torch.where(active, torch.sign(G - target) * g, torch.zeros_like(g))
        new = (w - self.lr * grad_w).clamp(min=self.min_weight)
        new = sync_mean(new * len(self.task_names) / new.sum())
        self.weights.copy_(new.detach())
        self.last_grad_norms = {n: float(x) for n, x in zip(self.task_names, G.detach().cpu())}
        return total


class PCGradWeighting(Weighting):
    """PCGrad gradient surgery (Yu et al., NeurIPS 2020) on the shared parameters.

    Task losses are scaled by the spec weights, their shared-parameter gradients projected
    (`pcgrad_project`, seeded task order) and summed; task-specific parameters get their usual
    gradients. Gradient-level: call `backward`, not `combine`, while training (see module doc).
    """

    name = "pcgrad"
    gradient_level = True

    def __init__(self, tasks: Sequence[TaskSpec], seed: int = 0) -> None:
        super().__init__(tasks)
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, losses, shared=None, present=None):
        if self.training and torch.is_grad_enabled():
            raise RuntimeError("PCGrad works on gradients: call weighting.backward(losses, shared) with "
                               "manual optimization instead of returning combine(...) from training_step")
        return super().combine(losses, shared, present)

    def backward(self, losses, shared=None, present=None, backward_fn=None):
        if shared is None:
            raise ValueError("PCGrad needs the shared parameters: backward(losses, model.shared_parameters())")
        shared = list(shared)
        weighted = [self.spec_weights[i].to(losses[n].device) * losses[n] for i, n in enumerate(self.task_names)]
        self._stack(losses)  # key check
        update = pcgrad_project(task_gradients(weighted, shared), self.generator)
        before = [p.grad.clone() if p.grad is not None else None for p in shared]
        total = torch.stack(weighted).sum()
        (backward_fn or torch.Tensor.backward)(total)  # heads (and anything else) get ordinary grads
        offset = 0
        for p, old in zip(shared, before):
            piece = update[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            p.grad = piece.clone() if old is None else old + piece
        return total.detach()


WEIGHTINGS: dict[str, type[Weighting]] = {
    cls.name: cls for cls in (FixedWeighting, UncertaintyWeighting, DWAWeighting, GradNormWeighting, PCGradWeighting)
}


def create_weighting(name: str, tasks: Sequence[TaskSpec], **kwargs: object) -> Weighting:
    """Build a weighting by name (fixed, uncertainty, dwa, gradnorm, pcgrad)."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; choose from {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](tasks, **kwargs)  # type: ignore[arg-type]
