"""`effzoo train --pretrained SOURCE`: find the weights, build the architecture they were trained as, and
adapt them to the data's classes and channels.

SOURCE is tried as, in order:
- an existing path: an `effzoo train` output folder (model.safetensors + model.json), a `.safetensors`
  file (with a model.json beside it: an effzoo model; without: timm-named weights), or a torch file
  (`.pth`, `.pt`, `.bin`; read with weights_only=True, so no code in it runs) holding timm- or
  torchvision-named weights (the latter through `models.convert`);
- a shipped zoo name (`effzoo zoo list`), its files checked against their sha256 in the index;
- a Hugging Face hub id (`timm/efficientnet_b0.ra_in1k`, or `hf-hub:` + id): its model.safetensors
  through huggingface_hub, from the local cache or, when the network is there, downloaded.

The architecture: an effzoo model records its own (model.json: name, phi, coefficients, small_input),
and asking for another with --model/--phi is an error naming both; a bare weights file takes the
flags' model, a timm hub id the model its name carries. The data's side: a new classifier when the
classes differ (in number, or in name where both sides name them), zero-initialized under
`--head-init zero`; a classifier that fits is loaded and kept as it is. Input channels are adapted as
timm's `adapt_input_conv` does: for one data channel the stem kernel is summed over the weights'
channels, for more it is repeated and rescaled by (weights' channels / data's), so that a grayscale
image copied into every channel gives the stem (and the whole backbone) the same response as before
(exactly for 3 -> 1 and 1 -> 3; see `adapt_input_conv`).

`--resume` rebuilds the model as the run's last.ckpt records it (the registry name, arguments and lineage
in its hyperparameters) and reads nothing from the source: the checkpoint holds the weights, and the
source may since have moved or gone.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..artifacts.weights import MODEL_META, MODEL_WEIGHTS, load_weights, read_state_dict
from ..artifacts.zoo_index import check_against_index, read_index, sha256_file, verify
from ..data.source import DataSource
from ..models import create_model, is_model, list_models
from ..models.convert import TF_BN_EPS_MODELS, convert_torchvision_state_dict
from ..models.init import zero_init_classifier
from ..scaling import DEFAULT_COEFFICIENTS
from ..wording import setting
from .config import TrainConfig

# The model arguments that decide weight shapes (beyond classes and channels): the flags may not override
# those an effzoo source records.
ARCH_KEYS = ("phi", "coefficients", "depth_multiplier", "width_multiplier")
DEFAULT_MODEL = TrainConfig.__dataclass_fields__["model"].default
HUB_PREFIX = "hf-hub:"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass
class Source:
    """Where the weights are and what is known about them."""

    spec: str  # as the user wrote it
    kind: str  # zoo, run, file, hub (a file becomes timm-file or torchvision-file once read)
    weights: Path
    meta: dict[str, Any] | None = None  # model.json of an effzoo model
    name: str | None = None  # zoo name or hub id
    arch_hint: str | None = None  # a registered model named by a hub id


# -- finding the weights ---------------------------------------------------------------------------
def resolve_source(spec: str) -> Source:
    text = str(spec)
    hub = text[len(HUB_PREFIX):] if text.startswith(HUB_PREFIX) else None
    path = Path(text).expanduser()
    if hub is None and path.exists():
        return _local_source(text, path)
    if hub is None and text in _zoo_names():
        folder = verify(text)
        return Source(text, "zoo", folder / MODEL_WEIGHTS, json.loads((folder / MODEL_META).read_text()), name=text)
    hub_id = hub or text
    if HUB_ID.fullmatch(hub_id) and (hub is not None or not _looks_local(path)):
        arch = hub_id.split("/")[-1].split(".")[0]
        return Source(text, "hub", hub_weights(hub_id), name=hub_id, arch_hint=arch if is_model(arch) else None)
    raise FileNotFoundError(f"{setting('pretrained', text)}: no such file or folder, and not a shipped zoo model (`effzoo zoo "
                            f"list`) or a Hugging Face hub id (org/name, or hf-hub:org/name)")


def _zoo_names() -> list[str]:
    try:
        return list(read_index()["models"])
    except (FileNotFoundError, ValueError):
        return []


def _looks_local(path: Path) -> bool:
    """A missing path the user meant as a file (a weights suffix, or a folder of it that exists), not a hub id."""
    return path.suffix in WEIGHT_SUFFIXES or str(path).startswith((".", "/", "~")) or Path(path.parts[0]).is_dir()


def _local_source(spec: str, path: Path) -> Source:
    if path.is_dir():
        if not (path / MODEL_WEIGHTS).is_file():
            ckpts = sorted(p.name for p in path.glob("*.ckpt"))
            hint = (f"; a run stopped before its end has only {', '.join(ckpts)}: finish it with "
                    f"{setting('resume', True)}, or pass a .ckpt with the {setting('model')} and {setting('phi')} it "
                    f"was trained with") if ckpts else ""
            raise FileNotFoundError(f"{setting('pretrained', spec)}: the folder has no {MODEL_WEIGHTS}; give an `effzoo train` "
                                    f"output folder or a weights file{hint}")
        path = path / MODEL_WEIGHTS
    meta = _effzoo_meta(path) if path.suffix == ".safetensors" else None
    if meta is None:
        return Source(spec, "file", path)
    check_against_index(path)  # a zoo folder given by its path is verified like a zoo name
    return Source(spec, "run", path, meta)


def _effzoo_meta(weights: Path) -> dict[str, Any] | None:
    """The effzoo model.json beside a .safetensors file, or None when there is none (a plain weights file)."""
    for candidate in (weights.with_suffix(".json"), weights.parent / MODEL_META):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{setting('pretrained', weights)}: {candidate} is not valid JSON ({e})") from None
            if isinstance(meta, dict) and "model_name" in meta:
                return meta
    return None


def hub_weights(hub_id: str) -> Path:
    """The hub repo's model.safetensors through huggingface_hub: the local cache, else a download."""
    advice = (f"download https://huggingface.co/{hub_id}/resolve/main/{MODEL_WEIGHTS} where there is a network "
              f"and pass its path: {setting('pretrained', 'path/to/' + MODEL_WEIGHTS)}")
    try:
        from huggingface_hub import constants, hf_hub_download  # deferred: only hub ids need it
    except ImportError:
        raise ValueError(f"{setting('pretrained', hub_id)}: reading a hub id needs huggingface_hub (pip install "
                         f"huggingface_hub); or {advice}") from None
    try:
        return Path(hf_hub_download(hub_id, MODEL_WEIGHTS))
    except Exception as e:  # offline, no such repo, no network: all end the same way for the user
        why = "offline (HF_HUB_OFFLINE) and not in the local cache" if constants.is_offline_mode() else \
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}"
        raise ValueError(f"{setting('pretrained', hub_id)}: could not get {MODEL_WEIGHTS} from the Hugging Face hub ({why}); "
                         f"{advice}") from None


# -- the architecture ------------------------------------------------------------------------------
def _describe(name: str, args: Mapping[str, Any]) -> str:
    parts = [f"{k}={_text(args[k])}" for k in ARCH_KEYS if args.get(k) is not None]
    return f"{name} ({', '.join(parts)})" if parts else f"{name} (as published)"


def _text(value: Any) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, (list, tuple)) else f"{value:g}"


def _params(meta: Mapping[str, Any]) -> str:
    return f" with {meta['params']:,} parameters" if isinstance(meta.get("params"), int) else ""


def _same_arch(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def norm(args: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: args.get(k) for k in ARCH_KEYS}
        if out["phi"] is not None:  # phi's coefficients default to the paper's
            out["coefficients"] = [float(c) for c in (out["coefficients"] or DEFAULT_COEFFICIENTS)]
        return out
    return norm(a) == norm(b)


def architecture(cfg: TrainConfig, source: Source, spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Registry name and arguments of the model to fine-tune. `spec` is the run's own `model_spec` (the
    data's classes, channels and base resolution, and what the flags set)."""
    user_arch = {k: spec[k] for k in ARCH_KEYS if spec.get(k) is not None}
    user_set = cfg.model != DEFAULT_MODEL or bool(user_arch)
    if source.meta is None:  # bare weights: the flags' model, else the one a hub id names
        name = cfg.model if user_set or source.arch_hint is None else source.arch_hint
        return name, dict(spec)
    src_name, src_args = source.meta["model_name"], dict(source.meta.get("model_args") or {})
    if user_set and (cfg.model != src_name or not _same_arch(user_arch, src_args)):
        raise ValueError(
            f"{setting('pretrained', source.spec)} holds {_describe(src_name, src_args)}{_params(source.meta)}, but you ask "
            f"for {_describe(cfg.model, user_arch)}: weights fit only the architecture they "
            f"were trained as. Drop {'/'.join(setting(k) for k in ('model', *ARCH_KEYS))} to fine-tune it "
            f"as it is, or choose a source of the architecture you want")
    args = {k: v for k, v in src_args.items() if k not in ("num_classes", "in_chans", "base_resolution",
                                                             "features_only", "out_indices")}
    for key, value in spec.items():  # the data's classes, channels and resolution; the flags' dropout, small_input
        if key in ARCH_KEYS or (key == "small_input" and value is None and "small_input" in args):
            continue
        args[key] = value
    if "resolution" not in args and source.meta.get("train_resolution"):
        # The features were learned at this size; the data's base resolution x gamma^phi may be far from it.
        args["resolution"] = int(source.meta["train_resolution"])
    return src_name, args


# -- reading and adapting the weights ----------------------------------------------------------------
def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A stem kernel (out, c, k, k) for `in_chans` input channels (timm's adapt_input_conv, any c): summed
    for one channel; else repeated over the channels and scaled by c / in_chans. An image whose channels
    are all equal then gives the same response as the c-channel original whenever in_chans is 1 or a
    multiple of c (1 -> 3, 3 -> 6); other counts (3 -> 4) keep timm's tiling, close but not exact."""
    c = weight.shape[1]
    if c == in_chans:
        return weight
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / c), 1, 1)[:, :in_chans] * (c / in_chans)
    return w.to(weight.dtype)


def read_weights(source: Source, model: nn.Module, name: str, args: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The source's tensors under `model`'s names (torchvision's renamed; a multi-task run's backbone)."""
    _check_weights_file(source)
    try:
        state = read_state_dict(source.weights)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{setting('pretrained', source.spec)}: {e}") from None
    if source.meta is not None and source.meta.get("multitask"):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    own = model.state_dict()
    if source.kind == "file":
        source.kind = "timm-file"
        if len(set(state) & set(own)) < len(own) / 2 and any(k.startswith("features.") for k in state):
            state, source.kind = _from_torchvision(state, source, name, args), "torchvision-file"
    return state


def _check_weights_file(source: Source) -> None:
    """A torch file is a zip archive (torch.save) or a bare pickle (its legacy format); anything else (a text
    file, an image) is named as not weights, rather than as a pickle the safe loader refused."""
    if source.weights.suffix == ".safetensors":
        return  # the safetensors reader names a broken one itself
    with open(source.weights, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        raise ValueError(f"{setting('pretrained', source.spec)}: {source.weights} is not a weights file (neither "
                         f"safetensors nor a torch state dict); pass a model.safetensors, a .pth state dict, a run "
                         f"folder, a zoo name or a hub id")


def _from_torchvision(state: dict[str, torch.Tensor], source: Source, name: str, args: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    # The converter zips tensors in order and checks every shape, so it needs the architecture with the
    # file's own channels and classes: built on the meta device (no memory, no init cost).
    io = _io_shape(state)
    if io is None:
        raise ValueError(f"{setting('pretrained', source.spec)}: not a classification network's state dict (no conv or linear weights)")
    with torch.device("meta"):
        twin = create_model(name, **{**args, **io})
    try:
        return convert_torchvision_state_dict(state, twin)
    except ValueError as e:
        raise ValueError(f"{setting('pretrained', source.spec)} (torchvision names) does not fit {_describe(name, args)}: {e}") from None


def _io_shape(state: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """The input channels and classes a state dict was saved with: its first conv's and last linear's (every
    family here starts with a conv and ends with one linear classifier); None for anything else."""
    convs = [v for v in state.values() if v.ndim == 4]
    linears = [v for v in state.values() if v.ndim == 2]
    return {"in_chans": convs[0].shape[1], "num_classes": linears[-1].shape[0]} if convs and linears else None


def adapt_weights(state: dict[str, torch.Tensor], model: nn.Module, keep_classifier: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fit the stem to the model's input channels and, unless the classifier fits and may be kept, put
    the model's own new classifier in. Returns the tensors and what was changed."""
    state, own, notes = dict(state), model.state_dict(), {"classifier": "loaded"}
    stem = f"{model.pretrained_cfg.first_conv}.weight"
    if stem in state and stem in own and state[stem].ndim == 4 and state[stem].shape[1] != own[stem].shape[1]:
        notes["input_channels"] = f"{state[stem].shape[1]} -> {own[stem].shape[1]}"
        state[stem] = adapt_input_conv(state[stem], own[stem].shape[1])
    prefix = model.classifier_name + "."
    head = [k for k in own if k.startswith(prefix)]
    fits = all(k in state and state[k].shape == own[k].shape for k in head)
    if not (keep_classifier and fits):
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        state.update({k: own[k] for k in head})
        notes["classifier"] = "new"
    return state, notes


def _guess_architectures(state: Mapping[str, torch.Tensor], args: Mapping[str, Any], family: str) -> list[str]:
    """Registered models whose every tensor has the file's shape, tried on the meta device (the error path
    only): the asked-for family first (a wrong variant is the usual slip), the others only if none fits."""
    io = _io_shape(state)
    if io is None:
        return []
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    fixed = {**io, "small_input": args.get("small_input")}
    names = [n for n in list_models() if not n.startswith("effzoo_")]
    for group in ([n for n in names if n.startswith(family)], [n for n in names if not n.startswith(family)]):
        found = []
        for candidate in sorted(group, key=len, reverse=True):  # a named preset (efficientnet_b0) before its family
            try:
                with torch.device("meta"):
                    other = create_model(candidate, **fixed)
            except (TypeError, ValueError):
                continue
            if {k: tuple(v.shape) for k, v in other.state_dict().items()} == shapes:
                found.append(candidate)
        if found:
            return found
    return []


def load_adapted(model: nn.Module, state: dict[str, torch.Tensor], source: Source, name: str, args: Mapping[str, Any]) -> None:
    try:
        load_weights(model, state, source=setting("pretrained", source.spec))
    except ValueError as e:
        family = str(model.pretrained_cfg.scaling.get("family") or name)
        guesses = _guess_architectures(state, args, family) if source.meta is None else []
        hint = f" The file fits {', '.join(guesses[:3])}: pass {setting('model', guesses[0])}." if guesses else \
            f" Pass the {setting('model')} (and {setting('phi')}) the weights were trained as."
        raise ValueError(f"{e}{hint}") from None
    if source.kind == "torchvision-file" and name in TF_BN_EPS_MODELS:  # as convert.load_torchvision_weights
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 1e-3


# -- the whole step --------------------------------------------------------------------------------
def _class_names(meta: Mapping[str, Any] | None) -> list[str] | None:
    if not meta:
        return None
    names = (meta.get("pretrained_cfg") or {}).get("class_names") or meta.get("class_names")
    return [str(n) for n in names] if names else None


def lineage(source: Source, name: str, notes: Mapping[str, Any]) -> dict[str, Any]:
    """The parent of the fine-tuned model, for model.json, the card and the factsheet."""
    meta = source.meta or {}
    record = {
        "source": source.spec, "kind": source.kind, "name": source.name,
        "path": None if source.kind in ("zoo", "hub") else str(source.weights.resolve()),
        "sha256": sha256_file(source.weights), "model_name": meta.get("model_name", name),
        "dataset": (meta.get("data") or {}).get("dataset") or (meta.get("pretrained_cfg") or {}).get("dataset"),
        **notes,
    }
    return {k: v for k, v in record.items() if v is not None}


def build_pretrained(cfg: TrainConfig, data: DataSource, spec: Mapping[str, Any],
                     resume_from: Path | None = None) -> nn.Module:
    """The model of a `--pretrained` run, weights loaded and adapted; model.json records what was built.
    With `resume_from` (the run's last.ckpt) the model is rebuilt as that checkpoint records it, without
    the source: its weights are about to be replaced by the checkpoint's, and the source may be gone."""
    if resume_from is not None:
        model = rebuild_from_checkpoint(cfg, spec, resume_from)
        if model is not None:
            return model
    source = resolve_source(cfg.pretrained)
    name, args = architecture(cfg, source, spec)
    try:
        model = create_model(name, **args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{setting('pretrained', source.spec)}: cannot build {_describe(name, args)}: {e}") from None
    state = read_weights(source, model, name, args)
    src_classes, data_classes = _class_names(source.meta), [str(c) for c in data.class_names]
    keep = src_classes is None or src_classes == data_classes
    state, notes = adapt_weights(state, model, keep_classifier=keep)
    load_adapted(model, state, source, name, args)
    if notes["classifier"] == "new" and cfg.head_init == "zero":
        zero_init_classifier(model)  # only a new head: a loaded classifier is what the source learned
    model.pretrained_cfg.parent = lineage(source, name, notes)
    return model


def rebuild_from_checkpoint(cfg: TrainConfig, spec: Mapping[str, Any], checkpoint: Path) -> nn.Module | None:
    """The architecture and lineage a `--pretrained` run's checkpoint records (its hyperparameters), no
    weights read; None for a checkpoint that records no lineage (written before it did): the source then
    decides, as it did when the run started."""
    if not checkpoint.is_file():
        return None  # nothing to resume from: `prepare_output` says so in the run's words
    try:  # mmap: only the small hyperparameters are read, not the weights and optimizer state
        hp = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
    except Exception as e:  # a truncated or foreign file: say which and what to do, not unpickler internals
        raise ValueError(f"{setting('resume', True)}: cannot read {checkpoint} ({type(e).__name__}); it is not an "
                         f"`effzoo train` checkpoint, or a broken one: start again without {setting('resume')}") from None
    if not hp.get("parent") or "model_name" not in hp:
        return None
    name, args = hp["model_name"], dict(hp.get("model_args") or {})
    _check_resume_fits(cfg, spec, checkpoint, name, args)
    model = create_model(name, **args)
    model.pretrained_cfg.parent = dict(hp["parent"])
    return model


def _check_resume_fits(cfg: TrainConfig, spec: Mapping[str, Any], checkpoint: Path, name: str,
                       args: Mapping[str, Any]) -> None:
    """The flags and data of the resumed run against what the checkpoint was trained as: a mismatch named
    here, not as a state-dict shape error inside Lightning."""
    user_arch = {k: spec[k] for k in ARCH_KEYS if spec.get(k) is not None}
    if (cfg.model != DEFAULT_MODEL or user_arch) and (cfg.model != name or not _same_arch(user_arch, args)):
        raise ValueError(f"{setting('resume', True)}: {checkpoint} holds {_describe(name, args)}, but you ask for "
                         f"{_describe(cfg.model, user_arch)}; resume with the run's own settings (drop "
                         f"{'/'.join(setting(k) for k in ('model', *ARCH_KEYS))}), or start a new {setting('output')}")
    for key, what in (("num_classes", "classes"), ("in_chans", "input channels")):
        if key in args and spec.get(key) is not None and int(spec[key]) != int(args[key]):
            raise ValueError(f"{setting('resume', True)}: {checkpoint} was trained for {args[key]} {what}, the data "
                             f"({setting('data', cfg.data)}) has {spec[key]}; resume on the run's own data, or start "
                             f"a new {setting('output')}")
