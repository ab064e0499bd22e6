"""Hard parameter sharing: one backbone, one linear head per task (Caruana 1997; Ruder 2017).

Heads output raw scores (logits for classification and multi-label, values for regression);
the losses apply softmax/sigmoid in their numerically stable fused forms and `predict` applies
them for inference. The stacked head matrix W = [w_1 ... w_t] is what the MALSAR-style
regularizers act on.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks import TaskSpec, check_unique, parse_tasks

FEATURE_NORMS = ("none", "layernorm", "l2")


class MultiTaskModel(nn.Module):
    """Shared backbone + `nn.ModuleDict` of per-task linear heads; `forward` returns {task: output}.

    The backbone is any zoo model (pooled features from `forward_head(forward_features(x),
    pre_logits=True)`) or any module mapping images to (N, num_features). A zoo backbone's own
    classifier is reset to identity: it would be an unused parameter, which DDP rejects and
    which would silently sit in checkpoints.

    `feature_norm` ("layernorm" without affine, or "l2") fixes the feature scale; without it the
    backbone can grow its features to dodge a penalty on W (mtl.md §2), so use it with the
    structural regularizers.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tasks: Sequence[TaskSpec],
        *,
        num_features: int | None = None,
        feature_norm: str = "none",
    ) -> None:
        super().__init__()
        self.tasks = check_unique(tasks)
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {feature_norm!r}")
        self.zoo_backbone = hasattr(backbone, "forward_features") and hasattr(backbone, "forward_head")
        if self.zoo_backbone and hasattr(backbone, "reset_classifier"):
            backbone.reset_classifier(0)
        d = num_features if num_features is not None else getattr(backbone, "num_features", None)
        if not isinstance(d, int) or d < 1:
            raise ValueError("cannot tell the backbone's feature size: pass num_features= or use a zoo model")
        self.backbone = backbone
        self.num_features = d
        self.feature_norm = feature_norm
        self.norm = nn.LayerNorm(d, elementwise_affine=False) if feature_norm == "layernorm" else nn.Identity()
        self.heads = nn.ModuleDict({t.name: nn.Linear(d, t.num_outputs) for t in self.tasks})

    @property
    def pretrained_cfg(self) -> Any:
        """The backbone's model description, with the heads recorded (input size, preprocessing, tasks)."""
        cfg = self.backbone.pretrained_cfg
        cfg.tasks = [t.to_dict() for t in self.tasks]
        return cfg

    # -- forward -------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled shared features (N, num_features): the representation all heads read."""
        f = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True) \
            if self.zoo_backbone else self.backbone(x)
        if f.ndim != 2 or f.shape[1] != self.num_features:
            raise ValueError(f"backbone returned features of shape {tuple(f.shape)}, expected (N, {self.num_features})")
        f = self.norm(f)
        return F.normalize(f, dim=1) if self.feature_norm == "l2" else f

    def forward_heads(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """Apply every head to precomputed features (lets callers reuse one backbone pass)."""
        return {name: head(f) for name, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_heads(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Probabilities for classification (softmax) and multi-label (sigmoid); values for regression."""
        out = self.forward(x)
        for t in self.tasks:
            if t.kind == "classification":
                out[t.name] = out[t.name].softmax(-1)
            elif t.kind == "multilabel":
                out[t.name] = out[t.name].sigmoid()
        return out

    # -- parameter groups ------------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task's gradient flows through (PCGrad, cosine act on these)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def task_parameters(self, name: str | None = None) -> list[nn.Parameter]:
        """Head parameters of one task, or of all tasks."""
        heads = [self.heads[name]] if name is not None else list(self.heads.values())
        return [p for h in heads for p in h.parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """Weight of the last shared conv/linear layer: where GradNorm measures gradient norms.

        Found as the last registered module with a >= 2-D trainable weight (for zoo models the
        1x1 `conv_head`); falls back to the last shared parameter.
        """
        last = None
        for m in self.backbone.modules():
            w = getattr(m, "weight", None)
            if isinstance(w, nn.Parameter) and w.ndim >= 2 and w.requires_grad:
                last = w
        if last is None:
            shared = self.shared_parameters()
            if not shared:
                raise ValueError("the backbone has no trainable parameters")
            last = shared[-1]
        return [last]

    # -- the stacked head matrix W --------------------------------------------------------------
    def head_columns(self) -> dict[str, slice]:
        """Which columns of W belong to which task."""
        cols, start = {}, 0
        for t in self.tasks:
            cols[t.name] = slice(start, start + t.num_outputs)
            start += t.num_outputs
        return cols

    def head_weight_matrix(self) -> torch.Tensor:
        """W = [w_1 ... w_t], features x (sum of head outputs); differentiable (penalty mode)."""
        return torch.cat([self.heads[t.name].weight.t() for t in self.tasks], dim=1)

    @torch.no_grad()
    def set_head_weight_matrix(self, W: torch.Tensor) -> None:
        """Write a (proximally updated) W back into the heads, in place."""
        cols = self.head_columns()
        expected = (self.num_features, sum(t.num_outputs for t in self.tasks))
        if tuple(W.shape) != expected:
            raise ValueError(f"W has shape {tuple(W.shape)}, expected {expected}")
        for name, sl in cols.items():
            self.heads[name].weight.copy_(W[:, sl].t())

    @classmethod
    def from_metadata(cls, backbone: nn.Module, meta: dict[str, Any]) -> "MultiTaskModel":
        """Rebuild the heads recorded by `task_metadata` (load the state dict afterwards)."""
        return cls(backbone, parse_tasks(meta["tasks"]), num_features=meta.get("num_features"),
                   feature_norm=meta.get("feature_norm", "none"))

    def task_metadata(self) -> dict[str, Any]:
        """What a checkpoint/card needs to rebuild and describe the heads."""
        return {
            "tasks": [t.to_dict() for t in self.tasks],
            "num_features": self.num_features,
            "feature_norm": self.feature_norm,
        }
