"""Safe loading and saving of weights: safetensors, or torch.load(weights_only=True); never arbitrary pickles.

Every path that reads weights in effzoo comes through `read_state_dict`, so a malicious pickle
is refused in one place, and `load_weights` names the first mismatched keys and shapes instead
of torch's wall of text.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..models import create_model, registry
from ..models.multitask import MultiTaskModel
from ..tasks import parse_tasks
from .atomic import atomic_write
from .zoo_index import check_against_index, find_pretrained, resolve_checkpoint

# Where pretrained=True looks before going to the network.
HUB_FILENAME = "model.safetensors"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file, refusing anything but tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    obj = _torch_load_weights_only(
        path, "torch checkpoint",
        "it contains pickled Python objects other than tensors, which could run code when unpickled",
        "Re-save the weights as a plain state dict or .safetensors.")
    return _unwrap_state_dict(obj, path)


def _torch_load_weights_only(path: Path, kind: str, refused: str, advice: str) -> Any:
    """torch.load with weights_only=True; a refused pickle or an unreadable file becomes one clear ValueError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"refused to load {path}: {refused} ({refusal_reason(e)}); nothing in it was run. {advice}") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable {kind} (truncated or corrupt?): {e}") from None


def refusal_reason(error: Exception) -> str:
    """The useful line of torch's weights_only refusal: which callable the pickle wanted to call."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it asks for the Python callable `{found.group(1)}`"
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return f"the safe unpickler stopped at: {found.group(1).strip()}" if found else "the safe unpickler refused it"


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


class WeightsMismatchError(ValueError):
    """Weights that do not fit the model built for them; `file_shape` and `model_shape` describe both."""

    def __init__(self, message: str, file_shape: str, model_shape: str, differences: str) -> None:
        super().__init__(message)
        self.file_shape, self.model_shape, self.differences = file_shape, model_shape, differences


_STAGE_BLOCK = re.compile(r"^(?:blocks\.|layer)(\d+)\.(\d+)\.")


def describe_shape(state: Mapping[str, torch.Tensor]) -> str:
    """A network's shape as its weights tell it: parameters, blocks per stage, input channels, classes.
    Names both sides of a mismatch in words a user can compare (not the first differing key alone)."""
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    blocks: dict[int, int] = {}
    for key in state:
        if m := _STAGE_BLOCK.match(key):
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    parts = [f"{params / 1e6:.3f} M params"]
    if blocks:
        parts.append("blocks per stage " + ",".join(str(blocks[s]) for s in sorted(blocks)))
    stem = next((v for k, v in state.items() if k in ("conv_stem.weight", "conv1.weight")), None)
    if stem is not None and stem.dim() == 4:
        parts.append(f"{stem.shape[1]} input channel{'s' if stem.shape[1] != 1 else ''}")
    head = next((v for k, v in state.items() if k in ("classifier.weight", "fc.weight")), None)
    if head is not None and head.dim() == 2:
        parts.append(f"{head.shape[0]} classes from {head.shape[1]} features")
    return ", ".join(parts)


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
    """Strictly load `state_dict` into `model`; a mismatch is a `WeightsMismatchError` naming both shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        arch = model.pretrained_cfg.get("model_name", type(model).__name__) if hasattr(model, "pretrained_cfg") else type(model).__name__
        diffs = []
        if missing:
            diffs.append(f"{len(missing)} missing key(s), first: {missing[:3]}")
        if unexpected:
            diffs.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[:3]}")
        if shapes:
            diffs.append("shape mismatches, first: " + ", ".join(f"{k} file {a} vs model {b}" for k, a, b in shapes[:3]))
        file_shape, model_shape = describe_shape(state_dict), describe_shape(own)
        raise WeightsMismatchError(
            f"{source} does not match {arch}: the weights have {file_shape}; the model has {model_shape} "
            f"({'; '.join(diffs)}). Is it a checkpoint of another architecture, width, depth or number of "
            "classes/channels?", file_shape, model_shape, "; ".join(diffs))
    model.load_state_dict(state_dict, strict=True)


def load_pretrained(model: nn.Module, pretrained: bool | str | os.PathLike) -> None:
    """`pretrained=True`: a shipped zoo checkpoint (sha256-checked, offline), else the hub weights named in
    pretrained_cfg; a path: that local file."""
    if pretrained is True:
        shipped = find_pretrained(model)
        if shipped is not None:
            load_weights(model, read_state_dict(shipped), source=str(shipped))
            return
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
        from huggingface_hub import hf_hub_download  # optional, and only needed with a network
    except ImportError as e:
        raise RuntimeError("pretrained=True needs huggingface_hub (pip install huggingface_hub)") from e
    try:
        return Path(hf_hub_download(hub_id, HUB_FILENAME))
    except Exception as e:
        raise RuntimeError(
            f"could not download {HUB_FILENAME} from hub repo {hub_id} ({type(e).__name__}: {e}). "
            f"Without internet, download it elsewhere and pass pretrained='path/to/model.safetensors'."
        ) from None


# -- trained models: weights + metadata --------------------------------------------------------
MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"
META_FORMAT = "effzoo-model/1"
# Data-dependent preprocessing that a trained model carries in its pretrained_cfg.
DATA_CFG_KEYS = ("input_size", "test_input_size", "crop_pct", "interpolation", "mean", "std", "class_names", "dataset")


def apply_data_config(model: nn.Module, data_config: Mapping[str, Any]) -> nn.Module:
    """Record the training data's preprocessing (normalization, resolution, class names) in `pretrained_cfg`."""
    cfg = model.pretrained_cfg
    for key in DATA_CFG_KEYS:
        if data_config.get(key) is not None:
            value = data_config[key]
            cfg[key] = tuple(value) if key in ("input_size", "test_input_size", "mean", "std") else value
    if "class_names" in cfg:
        cfg["class_names"] = [str(c) for c in cfg["class_names"]]
    return model


def save_model(folder: str | os.PathLike, model: nn.Module, meta: Mapping[str, Any]) -> Path:
    """Write `model.safetensors` and `model.json` (the metadata that rebuilds it) into `folder`, atomically."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / MODEL_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(_jsonable(meta), indent=2) + "\n"
    atomic_write(folder / MODEL_META, lambda tmp: Path(tmp).write_text(text))
    return folder


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild a trained model, ready for inference (eval mode, preprocessing in `pretrained_cfg`).

    `path` is an output folder (with model.safetensors + model.json), a `.safetensors` file
    (metadata: its sibling `.json`, else `model.json` beside it), or a Lightning `.ckpt` written
    by `effzoo train` (read with weights_only=True; architecture from its hyperparameters), or the
    name of a shipped zoo model (its files sha256-checked).
    """
    path, _ = resolve_checkpoint(path)
    if path.is_dir():
        if not (path / MODEL_WEIGHTS).is_file():
            ckpts = sorted(path.glob("*.ckpt"))
            hint = f"; Lightning checkpoints there: {', '.join(p.name for p in ckpts)}" if ckpts else ""
            raise FileNotFoundError(f"{path} has no {MODEL_WEIGHTS} (is it an `effzoo train` output folder?){hint}")
        path = path / MODEL_WEIGHTS
    if path.suffix == ".ckpt":
        return _load_lightning_checkpoint(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: expected an output folder, a .safetensors file or a Lightning .ckpt")
    check_against_index(path)  # a shipped checkpoint whose sha256 disagrees with checkpoints/index.json is refused
    meta_path = metadata_path(path)
    if meta_path is None:
        raise FileNotFoundError(
            f"{MODEL_META} not found next to {path}: it carries the architecture (model name and arguments) "
            f"and preprocessing needed to rebuild the model. Keep {path.stem}.json or {MODEL_META} beside the "
            f"weights, or build the model with effzoo.create_model(...) and load the weights with "
            f"effzoo.artifacts.weights.load_weights(model, read_state_dict(path))."
        )
    try:
        meta = json.loads(meta_path.read_text())
        name, args = meta["model_name"], meta.get("model_args", {})
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{meta_path} is not effzoo model metadata (need model_name, model_args): {e}") from None
    model = build_from_metadata(name, args, meta.get("pretrained_cfg", {}), str(meta_path))
    if meta.get("multitask"):  # a multi-task run: the zoo model is the backbone under per-task heads
        model = MultiTaskModel.from_metadata(model, meta["multitask"])
    try:
        load_weights(model, read_state_dict(path), source=str(path))
    except WeightsMismatchError as e:
        described = ", ".join(f"{k}={v}" for k, v in dict(args).items() if k not in ("num_classes", "in_chans"))
        raise WeightsMismatchError(
            f"{meta_path.name} does not match the weights beside it: it describes {name} ({described}) with "
            f"{e.model_shape}, but {path.name} holds {e.file_shape} ({e.differences}). Was {meta_path.name} "
            "edited or copied from another run? Restore the one written with these weights",
            e.file_shape, e.model_shape, e.differences) from None
    return model.eval()


def metadata_path(weights: str | os.PathLike) -> Path | None:
    """The metadata describing a weights file (or an exported .onnx): its sibling `<stem>.json`, else
    `model.json` beside it; None when neither exists. Every reader of a run's metadata looks here."""
    weights = Path(weights)
    return next((p for p in (weights.with_suffix(".json"), weights.parent / MODEL_META) if p.is_file()), None)


def build_from_metadata(name: str, args: Mapping[str, Any], data_config: Mapping[str, Any], source: str) -> nn.Module:
    """The architecture `model.json` (or a .ckpt's hyperparameters) records, with its preprocessing; no weights."""
    try:
        model = create_model(name, **dict(args))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: cannot rebuild {name!r} from its stored arguments: {e}") from None
    return apply_data_config(model, data_config)


def _load_lightning_checkpoint(path: Path) -> nn.Module:
    ckpt = _torch_load_weights_only(
        path, "Lightning checkpoint",
        "it holds pickled Python objects beyond tensors and plain data, which could run code when unpickled",
        "Checkpoints written by `effzoo train` never need this: is the file from elsewhere? "
        "Export the model with effzoo to model.safetensors instead.")
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    if not hp or "model_name" not in hp:
        raise ValueError(
            f"{path} has no effzoo hyperparameters (model_name, model_args): it was not written by "
            f"`effzoo train`; build the model with create_model(...) and load its state_dict instead"
        )
    model = build_from_metadata(hp["model_name"], hp.get("model_args", {}), hp.get("data_config") or {}, str(path))
    if hp.get("tasks"):  # written by MultiTaskModule
        model = MultiTaskModel(model, parse_tasks(hp["tasks"]), feature_norm=hp.get("feature_norm", "none"))
    # checkpoint["state_dict"] holds the EMA weights when EMA was on (what validation measured).
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    load_weights(model, state, source=str(path))
    return model.eval()


# `create_model(..., pretrained=...)` reads weights through this module's safe loader.
registry.set_pretrained_loader(load_pretrained)
