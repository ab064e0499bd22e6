"""The shipped model zoo: `checkpoints/index.json`, sha256-checked loading and registered names.

Layout (the repo's `checkpoints/` folder, or `$EFFZOO_CHECKPOINTS`)::

    checkpoints/index.json                       # format, then one entry per model (see `index_entry`)
    checkpoints/<name>/model.safetensors         # weights (never a pickle)
    checkpoints/<name>/model.json                # architecture + preprocessing + metrics + recipe
    checkpoints/<name>/model_card.md, factsheet.json, datasheet_<data>.md, analysis.json, config.yaml ...

Every shipped name is registered, so `effzoo.list_models("effzoo_*")` lists them and
`effzoo.create_model(name, pretrained=True)` loads the local weights (no network). Weights whose
sha256 disagrees with the index are refused, whichever way they are loaded.

Adding a model (what built the shipped ones)::

    effzoo train --model efficientnet --phi -4 --data digits --output runs/zoo/NAME --no-progress-bar
    effzoo zoo add runs/zoo/NAME --name NAME --command "effzoo train ..." --evaluate
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

from .atomic import atomic_write

INDEX_NAME = "index.json"
INDEX_FORMAT = "effzoo-zoo/1"
ENV_VAR = "EFFZOO_CHECKPOINTS"
WEIGHTS, META = "model.safetensors", "model.json"
# Files copied from a run folder into the zoo (the Lightning .ckpt files and logs stay behind).
SHIPPED_FILES = (WEIGHTS, META, "metrics.json", "config.yaml", "fixres.json")
# Files whose digest must match the index before anything is loaded (weights, and the metadata that
# decides the architecture and preprocessing); the others are documentation, checked by `verify`.
GUARDED_FILES = (WEIGHTS, META)
# The source tree (effzoo/artifacts/zoo_index.py -> the repository): its checkpoints/ is the default zoo.
REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoints_dir() -> Path | None:
    """`$EFFZOO_CHECKPOINTS`, else the repository's `checkpoints/` (found from an editable install)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo = REPO_ROOT / "checkpoints"
    return repo if (repo / INDEX_NAME).is_file() else None


def _root(root: str | os.PathLike | None) -> Path:
    found = Path(root) if root is not None else checkpoints_dir()
    if found is None:
        raise FileNotFoundError(
            f"no shipped checkpoints found: set ${ENV_VAR} to a folder with {INDEX_NAME}, or use an editable "
            f"install of the effzoo repository (pip install -e .), whose checkpoints/ folder holds them"
        )
    return found


def read_index(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The parsed `index.json` ({"format", "models": {name: entry}}); an absent index is an empty zoo."""
    path = _root(root) / INDEX_NAME
    if not path.is_file():
        return {"format": INDEX_FORMAT, "models": {}}
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("models"), dict):
        raise ValueError(f"{path} is not an effzoo zoo index (expected format {INDEX_FORMAT!r} and a 'models' mapping)")
    return index


def entry(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    models = read_index(root)["models"]
    if name not in models:
        raise ValueError(f"{name!r} is not in the zoo index {_root(root) / INDEX_NAME}; shipped: {', '.join(models) or 'none'}")
    return models[name]


def model_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    return _root(root) / entry(name, root).get("folder", name)


def file_digest_problems(folder: Path, files: Mapping[str, Mapping[str, Any]], only: tuple[str, ...] | None = None) -> list[str]:
    """One line per listed file that is missing or whose sha256 differs from the index."""
    problems = []
    for fname, info in files.items():
        if only is not None and fname not in only:
            continue
        path = folder / fname
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (actual := sha256_file(path)) != info.get("sha256"):
            problems.append(f"{path} has sha256 {actual}, the index says {info.get('sha256')}")
    return problems


def verify(name: str, root: str | os.PathLike | None = None, all_files: bool = False) -> Path:
    """The folder of shipped model `name`, after checking its weights and metadata against the index.

    Raises ValueError naming each mismatch: a modified or corrupted file is never loaded.
    """
    e = entry(name, root)
    folder = model_folder(name, root)
    files = dict(e.get("files", {}))
    if WEIGHTS not in files:
        raise ValueError(f"zoo index entry {name!r} lists no sha256 for {WEIGHTS}; refusing to load unverified weights")
    problems = file_digest_problems(folder, files, None if all_files else GUARDED_FILES)
    if e.get("sha256", files[WEIGHTS].get("sha256")) != files[WEIGHTS].get("sha256"):
        problems.append(f"the index itself disagrees on {WEIGHTS} (sha256 {e['sha256']} vs files: {files[WEIGHTS].get('sha256')})")
    if problems:
        raise ValueError(
            f"refused to load shipped model {name!r}: " + "; ".join(problems) + ". The file was modified or corrupted "
            "after it was indexed; restore it (git checkout checkpoints/) or rebuild it with: "
            + " && ".join(e.get("reproduce", {}).get("commands", ["(no command recorded)"]))
        )
    return folder


def check_against_index(weights: str | os.PathLike) -> None:
    """If `weights` sits in a zoo folder listed by its parent's index.json, verify its sha256 (load_checkpoint calls this)."""
    weights = Path(weights).resolve()
    index_path = weights.parent.parent / INDEX_NAME
    if weights.name != WEIGHTS or not index_path.is_file():
        return
    try:
        models = read_index(weights.parent.parent)["models"]
    except ValueError:
        return  # not an effzoo index: nothing to check against
    for name, e in models.items():
        if e.get("folder", name) == weights.parent.name:
            verify(name, weights.parent.parent)
            return


# -- adding models -----------------------------------------------------------------------------
def find_pretrained(model: Any) -> Path | None:
    """The verified local weights of a shipped model built by `create_model(<shipped name>)`, else None."""
    name = getattr(model, "pretrained_cfg", {}).get("zoo_name")
    if not name:
        return None
    return verify(name, model.pretrained_cfg.get("zoo_root")) / WEIGHTS


def code_revision(repo: Path | None = None) -> str | None:
    """`git describe --always --dirty` of the effzoo source tree, or None outside a git checkout."""
    repo = repo or REPO_ROOT
    try:
        out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def index_entry(name: str, folder: Path, commands: list[str], seconds: float | None = None,
                hardware: str | None = None, revision: str | None = None,
                test_macs: int | None = None) -> dict[str, Any]:
    """The index record of a zoo folder: files and digests, the numbers, and how to rebuild it.

    `macs` are at the training resolution (as in model.json), `test_macs` at the test resolution."""
    meta = json.loads((folder / META).read_text())
    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
    scaling = meta.get("pretrained_cfg", {}).get("scaling", {})
    return {
        "name": name,
        "folder": folder.name,
        "sha256": files[WEIGHTS]["sha256"],
        "files": files,
        "model_name": meta["model_name"],
        "model_args": meta.get("model_args", {}),
        "phi": scaling.get("phi"),
        "dataset": meta.get("data", {}).get("dataset"),
        "params": meta.get("params"),
        "macs": meta.get("macs"),
        "test_macs": test_macs if test_macs is not None else meta.get("macs"),
        "train_resolution": meta.get("train_resolution"),
        "test_resolution": meta.get("test_resolution"),
        "metrics": {k: v for k, v in meta.get("metrics", {}).items() if isinstance(v, (int, float))},
        "reproduce": {"commands": list(commands), "train_seconds": seconds, "hardware": hardware,
                      "code_revision": revision},
        **({"parent": meta["parent"]} if meta.get("parent") else {}),  # what it was fine-tuned from
        "created": meta.get("created"),
    }


def write_index(root: Path, models: Mapping[str, Any]) -> Path:
    text = json.dumps({"format": INDEX_FORMAT, "models": dict(sorted(models.items()))}, indent=2) + "\n"
    return atomic_write(root / INDEX_NAME, lambda tmp: Path(tmp).write_text(text))


def index_entry_for(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The zoo entry of `folder` when it sits in an indexed zoo, else None (cards use it)."""
    folder = Path(folder).resolve()
    if not (folder.parent / INDEX_NAME).is_file():
        return None
    try:
        models = read_index(folder.parent)["models"]
    except ValueError:
        return None
    return next((e for n, e in models.items() if e.get("folder", n) == folder.name), None)


def resolve_checkpoint(spec: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """What a CHECKPOINT argument names: an existing path (run folder, .safetensors, .ckpt), else a shipped
    zoo name, whose folder is returned after its sha256s are checked. Returns (path, zoo name or None).
    Every command that takes a checkpoint, and `load_checkpoint`, resolve through here."""
    path = Path(spec)
    if path.exists():
        return path, None
    name = str(spec)
    models = read_index(root)["models"] if _root_or_none(root) is not None else {}
    if name in models:
        return verify(name, root), name
    close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else (" Shipped models: `effzoo zoo list`." if models else "")
    raise FileNotFoundError(f"checkpoint not found: {spec} is neither a file or folder nor a shipped zoo model.{hint}")


def zoo_output_folder(zoo_name: str) -> Path:
    """Where a command writes what it makes from a shipped model: runs/<name>/, never the zoo's own folder
    (its files are indexed by sha256; a card or an export written there would make `verify` fail)."""
    return Path("runs") / zoo_name


def resolve_export_folder(spec: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """`resolve_checkpoint` for commands that work on an exported model's folder (`card`, `zoo add`): a run
    folder, its model.safetensors, or a zoo name; a Lightning .ckpt points to the folder it was exported to."""
    path, name = resolve_checkpoint(spec, root)
    if path.is_file():
        if path.suffix == ".ckpt":
            raise ValueError(f"{path} is a Lightning checkpoint, not an exported model: give the run folder "
                             f"({path.parent}) that holds its {WEIGHTS} + {META}")
        path = path.parent
    missing = [needed for needed in (WEIGHTS, META) if not (path / needed).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} has no {' or '.join(missing)}: give an `effzoo train` output folder or a zoo name")
    return path, name


def _root_or_none(root: str | os.PathLike | None) -> Path | None:
    try:
        base = _root(root)
    except (FileNotFoundError, ValueError):
        return None
    return base if (base / INDEX_NAME).is_file() else None
