"""The layering, read from every import of every module (function bodies and importlib included).

core (tickwatch) <- libraries (feature_repo, detection) <- services (producers, stream_processors,
model_workers, api) <- operations (ops) <- benchmarks. A package imports its own layer's package
and the layers below it; libraries may also import each other, services never do; nothing but
benchmarks imports benchmarks. The one exception is the CLI dispatcher, named in EXCEPTIONS.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CORE, LIBRARY, SERVICE, OPERATIONS, BENCHMARKS = range(5)
LAYER_NAMES = ("core", "library", "service", "operations", "benchmarks")
LAYERS = {
    "tickwatch": CORE,
    "feature_repo": LIBRARY,
    "detection": LIBRARY,
    "producers": SERVICE,
    "stream_processors": SERVICE,
    "model_workers": SERVICE,
    "api": SERVICE,
    "ops": OPERATIONS,
    "benchmarks": BENCHMARKS,
}
# module -> the highest layer it may import, and only inside a function (a lazy subcommand import):
# `tickwatch` is one command whose subcommands live in the layers above the core.
# (tickwatch/__main__.py needs no exception: it imports tickwatch.cli only.)
EXCEPTIONS = {"tickwatch.cli": OPERATIONS}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str, bool]]:
    """(line, imported module, inside a function) for every import statement, relative imports
    resolved, and every importlib.import_module / __import__ of a string literal."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[int, str, bool]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, in_function
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if node.module:
                yield node.lineno, base, in_function
            else:  # `from . import x`: the submodules x
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}", in_function
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if name in ("import_module", "__import__"):
                if isinstance(arg, ast.JoinedStr) and arg.values:
                    arg = arg.values[0]  # f"pkg.{name}": its literal head names the package
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield node.lineno, arg.value.rstrip("."), in_function
        inside = in_function or isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inside)

    yield from visit(tree, False)


def violations(root: Path) -> list[str]:
    """Every import in root's layered packages that breaks the layering, as `path:line: why`."""
    found = []
    for package, layer in LAYERS.items():
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, target, lazy in imports(tree, module, path.name == "__init__.py"):
                top = target.split(".")[0]
                if top not in LAYERS or top == package:
                    continue
                to = LAYERS[top]
                allowed = to < layer or (to == layer == LIBRARY)
                ceiling = EXCEPTIONS.get(module)
                if not allowed and ceiling is not None and lazy and to <= ceiling:
                    allowed = True
                if not allowed:
                    where = path.relative_to(root)
                    found.append(
                        f"{where}:{line}: {module} ({LAYER_NAMES[layer]}) imports {target} "
                        f"({LAYER_NAMES[to]})"
                    )
    return found


def test_every_top_level_package_has_a_layer() -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages == set(LAYERS), "give a new top-level package its layer in LAYERS"


def test_every_module_imports_only_its_layer_and_below() -> None:
    assert violations(REPO) == []


def test_the_checker_reports_each_kind_of_violation(tmp_path: Path) -> None:
    files = {
        "tickwatch/__init__.py": "",
        "tickwatch/settings.py": "import json\nfrom tickwatch import schemas\n",
        "tickwatch/schemas.py": "def f():\n    from producers.parsing import parse\n",
        "tickwatch/cli.py": (
            "import api.main\n"  # module level: not lazy, so not covered by the exception
            "def run():\n"
            "    from ops import stack\n"  # lazy: the dispatcher's exception
            "    import benchmarks.common\n"  # above the exception's ceiling
        ),
        "tickwatch/loader.py": (
            "import importlib\n"
            "def load(name):\n"
            "    return importlib.import_module(f'model_workers.{name}')\n"
        ),
        "detection/__init__.py": "",
        "detection/scorer.py": "from . import models\nfrom feature_repo import feature_store\n",
        "detection/models.py": "from model_workers import train\n",
        "feature_repo/__init__.py": "",
        "feature_repo/feature_store.py": "from tickwatch.settings import X\n",
        "producers/__init__.py": "",
        "producers/parsing.py": "from .publisher import p\nfrom detection.scorer import S\n",
        "producers/publisher.py": "import stream_processors.app\n",
        "stream_processors/__init__.py": "",
        "stream_processors/app.py": "from ops.stack import services\n",
        "model_workers/__init__.py": "",
        "model_workers/train.py": "from api import scoring\n",
        "api/__init__.py": "",
        "api/scoring.py": "def f():\n    __import__('benchmarks.common')\n",
        "ops/__init__.py": "",
        "ops/stack.py": "from api import scoring\nfrom benchmarks.common import table\n",
        "benchmarks/__init__.py": "",
        "benchmarks/common.py": "from ops.stack import x\nfrom api import scoring\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    found = violations(tmp_path)

    assert found == [
        "tickwatch/cli.py:1: tickwatch.cli (core) imports api.main (service)",
        "tickwatch/cli.py:4: tickwatch.cli (core) imports benchmarks.common (benchmarks)",
        "tickwatch/loader.py:3: tickwatch.loader (core) imports model_workers (service)",
        "tickwatch/schemas.py:2: tickwatch.schemas (core) imports producers.parsing (service)",
        "detection/models.py:1: detection.models (library) imports model_workers (service)",
        "producers/publisher.py:1: producers.publisher (service) imports stream_processors.app "
        "(service)",
        "stream_processors/app.py:1: stream_processors.app (service) imports ops.stack "
        "(operations)",
        "model_workers/train.py:1: model_workers.train (service) imports api (service)",
        "api/scoring.py:2: api.scoring (service) imports benchmarks.common (benchmarks)",
        "ops/stack.py:2: ops.stack (operations) imports benchmarks.common (benchmarks)",
    ]
