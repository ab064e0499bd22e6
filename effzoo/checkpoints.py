"""Safe loading and saving of weights: safetensors, or torch.load(weights_only=True); never arbitrary pickles.

Every path that reads weights in effzoo comes through `read_state_dict`, so a malicious pickle
is refused in one place, and `load_weights` names the first mismatched keys and shapes instead
of torch's wall of text.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

# Where pretrained=True looks before going to the network.
HUB_FILENAME = "model.safetensors"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file, refusing anything but tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"refused to load {path}: it contains pickled Python objects other than tensors, which could run "
            f"code when unpickled ({str(e).splitlines()[0]}). Re-save the weights as a plain state dict or .safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable torch checkpoint (truncated or corrupt?): {e}") from None
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    # Common containers: Lightning {"state_dict"}, timm train.py {"state_dict_ema"/"model"}; DDP "module." prefixes.
    if isinstance(obj, Mapping):
        for key in ("state_dict_ema", "state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
    """Strictly load `state_dict` into `model`, with an error naming the first mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        arch = model.pretrained_cfg.get("model_name", type(model).__name__) if hasattr(model, "pretrained_cfg") else type(model).__name__
        parts = [f"{source} does not match {arch}:"]
        if missing:
            parts.append(f"{len(missing)} missing key(s), first: {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[:3]}")
        if shapes:
            parts.append("shape mismatches, first: " + ", ".join(f"{k} file {a} vs model {b}" for k, a, b in shapes[:3]))
        parts.append("Is it a checkpoint of another architecture, width, depth or number of classes/channels?")
        raise ValueError(" ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def load_pretrained(model: nn.Module, pretrained: bool | str | os.PathLike) -> None:
    """`pretrained=True`: the hub weights named in pretrained_cfg; a path: that local file."""
    if pretrained is True:
        hub_id = model.pretrained_cfg.get("hf_hub_id")
        if not hub_id:
            raise ValueError(
                f"no published weights for {model.pretrained_cfg.get('model_name')} with these arguments "
                f"(scaled models have none); pass pretrained='path/to/weights' or pretrained=False"
            )
        path = download_hub_weights(hub_id)
    else:
        path = Path(pretrained)
    load_weights(model, read_state_dict(path), source=str(path))


def download_hub_weights(hub_id: str) -> Path:  # pragma: no cover - needs the network
    """Fetch `model.safetensors` of a Hugging Face hub repo (timm publishes its weights there)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise RuntimeError("pretrained=True needs huggingface_hub (pip install huggingface_hub)") from e
    try:
        return Path(hf_hub_download(hub_id, HUB_FILENAME))
    except Exception as e:
        raise RuntimeError(
            f"could not download {HUB_FILENAME} from hub repo {hub_id} ({type(e).__name__}: {e}). "
            f"Without internet, download it elsewhere and pass pretrained='path/to/model.safetensors'."
        ) from None


def atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """Write through `write(tmp_path)` to a temp file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
