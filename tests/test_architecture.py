"""The package's layering: every import points down (bottom: scaling, tasks, models; then artifacts; then
the workflows; the command line on top), the model library has no side effects on import, and a
training run builds its model once."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "effzoo"
# Bottom up; a module may import its own layer and the ones below.
LAYERS = [
    {"version", "wording", "scaling", "tasks", "models"},
    {"artifacts"},
    {"data", "training", "mtl", "evaluation", "export", "search"},
    {"cli"},
]


def layer_of(component: str) -> int | None:
    return next((i for i, names in enumerate(LAYERS) if component in names), None)


def effzoo_imports(path: Path) -> list[str]:
    """The effzoo modules a file imports (top-level and inside functions), as dotted names."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
                found += [target] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                found.append(node.module or "")
    return [f for f in found if f == "effzoo" or f.startswith("effzoo.")]


def first_component(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def test_models_and_scaling_import_nothing_from_the_layers_above():
    files = [PACKAGE / "scaling.py", PACKAGE / "tasks.py", PACKAGE / "version.py", *(PACKAGE / "models").rglob("*.py")]
    bad = [(f.name, imp) for f in files for imp in effzoo_imports(f) if layer_of(first_component(imp) or "") != 0]
    assert bad == []


def test_every_import_points_down():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        own = first_component(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if own in (None, "__init__", "__main__"):  # the package root exposes the API from every layer
            continue
        for imp in effzoo_imports(path):
            target = first_component(imp)
            assert target is not None, f"{path} imports the package root ({imp}): import from the module instead"
            assert layer_of(target) is not None and layer_of(own) is not None, f"{path}: {own} or {target} is in no layer"
            if layer_of(target) > layer_of(own):
                upward.append(f"{path.relative_to(PACKAGE)} -> {imp}")
    assert upward == []


def test_no_module_imports_a_private_name():
    private = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("effzoo")):
                private += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert private == []


def test_models_import_without_the_zoo_index_and_build(tmp_path):
    """Importing the model library reads no index: with $EFFZOO_CHECKPOINTS pointing nowhere it imports,
    warns about nothing and builds models; the zoo's names are simply unknown to it."""
    code = (
        "import warnings, sys\n"
        "warnings.simplefilter('error')\n"
        "import effzoo.models as m\n"
        "model = m.create_model('efficientnet', phi=-4, num_classes=3, in_chans=1, small_input=True)\n"
        "print(type(model).__name__, m.list_models('effzoo_*'), 'effzoo.artifacts' in sys.modules)\n"
    )
    env = {"EFFZOO_CHECKPOINTS": str(tmp_path / "no-zoo-here"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["MBConvNet", "[]", "False"]


def test_training_builds_the_model_once(tmp_path, monkeypatch):
    from effzoo.models import base
    from effzoo.training.config import TrainConfig
    from effzoo.training.run import build

    built = []
    original = base.ZooModel.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(base.ZooModel, "__init__", counting)
    cfg, dm, module = build(TrainConfig(data="synthetic", model="efficientnet", phi=2, output=str(tmp_path),
                                        data_options={"size": 32, "num_samples": 16, "num_classes": 4, "in_chans": 1}))
    assert built == ["MBConvNet"]
    assert module.model.pretrained_cfg.input_size == (1, 40, 40) == (1, dm.image_size, dm.image_size)
    assert module.model.pretrained_cfg.scaling["base_resolution"] == 32  # the data's, not ImageNet's 224


def test_tasks_are_parsed_once_into_specs(tmp_path):
    from effzoo.tasks import TaskSpec
    from effzoo.training.config import TrainConfig

    cfg = TrainConfig(data="synthetic", tasks="main:cls:4,aux:reg:1:0.5", output=str(tmp_path))
    assert all(isinstance(t, TaskSpec) for t in cfg.tasks) and cfg.tasks[1].kind == "regression"
    assert cfg.to_dict()["tasks"][1] == cfg.tasks[1].to_dict()  # plain data for config.yaml
    assert cfg.replace(epochs=2).tasks == cfg.tasks
    with pytest.raises(ValueError, match="must be a classification task"):
        TrainConfig(data="synthetic", tasks="age:reg:1,main:cls:4")
