"""`ModelConfig`: the one typed description of a model, in the spirit of timm's `PretrainedCfg`.

It travels with the weights as `model.pretrained_cfg`: the registry name and arguments that rebuild
the architecture, the scaling record (phi, coefficients, multipliers, the base resolution they
scaled), and the preprocessing the weights expect (input and test sizes, crop, interpolation,
mean/std, channels, class names, task heads). `model.json` stores `to_dict()`; loading rebuilds from
`from_dict()`, which also reads files written before this class existed.

It reads like the dict it replaces (`cfg["input_size"]`, `cfg.get("class_names")`, `"dataset" in cfg`)
so that callers and the file format stay as they were, but only its fields can be set: a misspelt
key is an error, not a silent new entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

# Fields written even when empty, in this order (the shape model.json has always had).
_ALWAYS = ("architecture", "input_size", "test_input_size", "crop_pct", "interpolation", "mean", "std",
           "num_classes", "first_conv", "classifier", "total_stride", "scaling")
_TUPLES = ("input_size", "test_input_size", "mean", "std")


@dataclass(eq=False)  # equality is the mapping's: same present fields, same values
class ModelConfig(MutableMapping):
    architecture: str = ""
    input_size: tuple[int, int, int] = (3, 224, 224)
    test_input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    num_classes: int = 1000
    first_conv: str = ""
    classifier: str = ""
    total_stride: int = 32
    # phi, coefficients, depth, width, resolution (multipliers), base_resolution, input_resolution, family, preset
    scaling: dict[str, Any] = field(default_factory=dict)
    small_input: bool | None = None
    model_name: str | None = None  # registry name + arguments: what `create_model` rebuilds it from
    model_args: dict[str, Any] | None = None
    class_names: list[str] | None = None
    dataset: str | None = None
    tasks: list[dict[str, Any]] | None = None  # multi-task heads (TaskSpec.to_dict()), else None
    hf_hub_id: str | None = None
    zoo_name: str | None = None
    zoo_root: str | None = None
    parent: dict[str, Any] | None = None  # what it was fine-tuned from: source, kind, sha256 (training.pretrained)

    def __post_init__(self) -> None:
        for key in _TUPLES:
            setattr(self, key, tuple(getattr(self, key)))

    # -- the mapping view: a field is "present" when it is set (not None) --------------------------
    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None) if key in _FIELDS else None
        if value is None and key not in _ALWAYS:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELDS:
            raise KeyError(f"ModelConfig has no field {key!r}; fields: {', '.join(_FIELDS)}")
        setattr(self, key, tuple(value) if key in _TUPLES and value is not None else value)

    def __delitem__(self, key: str) -> None:
        self[key] = None

    def __iter__(self) -> Iterator[str]:
        return (k for k in _FIELDS if k in _ALWAYS or getattr(self, k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists for tuples), the `pretrained_cfg` of `model.json`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Read a stored config; keys this version does not know (from newer or older files) are skipped."""
        return cls(**{k: v for k, v in values.items() if k in _FIELDS})


_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
