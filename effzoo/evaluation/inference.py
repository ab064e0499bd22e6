"""The inference-optimized model: batch norm folded into the convolution before it, channels_last, optional compile.

How conv -> BN pairs are found: by watching one forward pass (dataflow), not by names or types.
Every convolution and batch norm of a deep copy gets a forward hook, and a `TorchFunctionMode`
records which module consumed each convolution output. A pair is folded only when

* the batch norm's input *is* the tensor a convolution returned (same object, not a copy),
* that tensor was used by nothing else (no residual add, no second branch, no in-place op
  outside the batch norm), and
* the convolution and the batch norm each ran exactly once (no shared modules), and
* both are plain torch classes (`nn.Conv2d`, `nn.BatchNorm2d` ...): a subclass such as timm's
  `BatchNormAct2d` does more than normalize and is left alone.

Why not a per-family pairing table? A table (`(conv_pw, bn1)`, `(conv_dw, bn2)` ... per block
class) silently misses the next block type someone adds, and names lie: `bn1` follows `conv_dw`
in a depthwise-separable block but `conv_pw` in an inverted residual. Why not `torch.fx`? Our
models check their input shape in Python (`x.shape[1] != in_chans`), which symbolic tracing
cannot evaluate, and FX fails on any data-dependent Python in foreign models. Watching a real
forward pass works on any `nn.Module` (timm's included), proves each edge instead of guessing
it, and costs one forward pass at a small resolution. After folding, the copy is run again on
the same input and must reproduce the eager output (1e-4 relative), so a wrong fold cannot
pass unnoticed.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

__all__ = ["optimize_for_inference", "find_conv_bn_pairs", "fold_conv_bn", "probe_input", "count_batchnorms"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Exactly these classes: a subclass may do more in forward (timm's BatchNormAct2d applies an activation),
# and replacing it with Identity would drop that. Such layers are left as they are.
_FOLDABLE_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def optimize_for_inference(model: nn.Module, compile: bool = False, channels_last: bool = True, *,
                           example_input: torch.Tensor | None = None, verify: bool = True,
                           compile_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """An eval-mode copy of `model` for inference: every BN that follows a conv folded into it, channels_last.

    The original model is not modified (not even its train/eval mode). `example_input` is the
    probe batch used to find conv -> BN edges (default: two random images at up to 64 px with the
    model's channels); `verify` re-runs it after folding and raises if the outputs moved by more
    than 1e-4 relative. `compile=True` wraps the result in `torch.compile(**compile_kwargs)` (default:
    inductor with weight freezing; the first call compiles: 20-80 s for EfficientNet-B0 on a 2-core
    CPU). Feed channels_last
    inputs for the best speed (`x.contiguous(memory_format=torch.channels_last)`); NCHW works too.
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    x = probe_input(fast) if example_input is None else example_input
    pairs, reference = find_conv_bn_pairs(fast, x)
    for conv_name, bn_name in pairs:
        fold_conv_bn(fast.get_submodule(conv_name), fast.get_submodule(bn_name))
        _set_submodule(fast, bn_name, nn.Identity())
    if verify:
        with torch.no_grad():
            got = fast(x)
        _check_close(got, reference, "folding batch norm into the convolutions")
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if compile:
        # Inductor's freezing treats the (frozen, folded) weights as constants: it constant-folds them and,
        # on CPU, pre-packs convolution weights for oneDNN, the step that makes compiled CNNs fast there.
        # It applies to calls under no_grad / inference_mode, which is how this copy is meant to be used.
        fast = torch.compile(fast, **(compile_kwargs if compile_kwargs is not None else {"options": {"freezing": True}}))
    return fast


def probe_input(model: nn.Module, max_size: int = 64, batch: int = 2) -> torch.Tensor:
    """A small random batch the model accepts: its configured channels, at most `max_size` px, no smaller than its stride."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = tuple(cfg.get("input_size", (getattr(model, "in_chans", 3), 224, 224)))
    stride = int(getattr(model, "total_stride", cfg.get("total_stride", 32)) or 1)
    side = max(min(size[-1], max_size), 2 * stride)
    param = next(model.parameters(), None)
    kwargs = {} if param is None else {"dtype": param.dtype, "device": param.device}
    return torch.randn(batch, size[0], side, side, generator=torch.Generator().manual_seed(0)).to(**kwargs)


class _ConsumerMode(TorchFunctionMode):
    """Records, for each watched tensor, the module that was running when a torch function used it."""

    def __init__(self, watched: dict[int, str], stack: list[str], uses: dict[int, set[str]]) -> None:
        super().__init__()
        self.watched, self.stack, self.uses = watched, stack, uses

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.watched:
            for t in _tensors(args, kwargs):
                if id(t) in self.watched:
                    self.uses.setdefault(id(t), set()).add(self.stack[-1] if self.stack else "")
        return func(*args, **kwargs)


def _tensors(args: Any, kwargs: dict) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []

    def visit(a: Any) -> None:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            for b in a:
                visit(b)
        elif isinstance(a, dict):
            for b in a.values():
                visit(b)

    visit(args)
    visit(kwargs)
    return out


@torch.no_grad()
def find_conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """(conv name, BN name) for every BN whose input is a conv's output used by nothing else; and the eager output on `x`.

    `model` must be in eval mode (a BN in train mode normalizes with batch statistics and cannot be folded).
    """
    if model.training:
        raise ValueError("find_conv_bn_pairs needs an eval-mode model (call .eval() on a copy)")
    names = {m: n for n, m in model.named_modules(remove_duplicate=False)}
    calls: dict[str, int] = {}
    stack: list[str] = []  # names of the modules currently running, innermost last
    conv_out: dict[int, str] = {}  # id(conv output) -> conv name
    keep_alive: list[torch.Tensor] = []  # so that ids are not reused by new tensors during the pass
    uses: dict[int, set[str]] = {}
    bn_input: dict[str, int] = {}  # BN name -> id of its input
    handles = []

    def pre(module: nn.Module, inputs: tuple) -> None:
        name = names[module]
        stack.append(name)
        calls[name] = calls.get(name, 0) + 1
        if isinstance(module, _BatchNorm) and inputs and isinstance(inputs[0], torch.Tensor):
            bn_input[name] = id(inputs[0])

    def post(module: nn.Module, inputs: tuple, output: Any) -> None:
        name = stack.pop()
        if isinstance(module, _CONVS) and isinstance(output, torch.Tensor):
            conv_out[id(output)] = name
            keep_alive.append(output)

    for m in model.modules():
        if isinstance(m, _CONVS + (_BatchNorm,)) or len(m._modules) > 0:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    try:
        with _ConsumerMode(conv_out, stack, uses):
            reference = model(x)
    finally:
        for h in handles:
            h.remove()

    pairs = []
    for bn_name, tid in bn_input.items():
        conv_name = conv_out.get(tid)
        if conv_name is None or calls.get(conv_name) != 1 or calls.get(bn_name) != 1:
            continue
        bn = model.get_submodule(bn_name)
        conv = model.get_submodule(conv_name)
        if type(bn) not in _FOLDABLE_BN or type(conv) not in _CONVS:
            continue
        if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
            continue
        users = uses.get(tid, set())
        # Every use must happen inside the BN itself (F.batch_norm, its input-dim check).
        if all(u == bn_name or u.startswith(bn_name + ".") for u in users) and users:
            pairs.append((conv_name, bn_name))
    del keep_alive
    return pairs, reference


@torch.no_grad()
def fold_conv_bn(conv: nn.modules.conv._ConvNd, bn: _BatchNorm) -> None:
    """Fold eval-mode `bn` (running statistics, affine) into `conv`'s weight and bias, in place (computed in float64)."""
    w = conv.weight.double()
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    new_w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    new_b = (bias - mean) * scale + beta
    conv.weight = nn.Parameter(new_w.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_b.to(conv.weight.dtype), requires_grad=False)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def _check_close(got: Any, want: Any, what: str, rtol: float = 1e-4) -> None:
    got_t = got if isinstance(got, torch.Tensor) else torch.as_tensor(got)
    want_t = want if isinstance(want, torch.Tensor) else torch.as_tensor(want)
    scale = want_t.abs().max().item() if want_t.numel() else 0.0
    diff = (got_t.float() - want_t.float()).abs().max().item() if want_t.numel() else 0.0
    if not diff <= rtol * scale + 1e-6:
        raise RuntimeError(f"{what} changed the outputs: max abs difference {diff:.3g} vs output scale {scale:.3g} "
                           f"(allowed {rtol:g} relative). Please report this model.")
