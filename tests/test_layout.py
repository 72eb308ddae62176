"""The package's architecture, read from its imports: layers only import downwards, no cycles.

Every `import` counts, inside functions too; only `if TYPE_CHECKING:` blocks (annotations) are
left out.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "variant"

# Lowest first. A module may import modules of its own layer or of lower layers.
LAYERS = [
    ("variant.config", "variant.units", "variant.atomic", "variant.images", "variant.jsonfile",
     "variant.weights", "variant.compiling", "variant.precision"),
    ("variant.sampling",),  # the engine: scale loop, protocol, lean cache, sampling settings
    ("variant.models",),  # model families (VAR, the VQVAE) implement the engine's protocol
    ("variant.data", "variant.pretrained", "variant.builtin", "variant.tokenizer_io"),
    # training (the supernet's and the tokenizer's), quality, speed/memory/budget, analyses
    ("variant.training", "variant.tokenizer", "variant.eval", "variant.efficiency",
     "variant.analysis"),
    # the pipeline behind `variant demo`, the studio page, the server, measured fronts
    ("variant.demo", "variant.studio", "variant.serve", "variant.front"),
    # the top: the commands (nothing below names them) and the package's public face
    ("variant.cli", "variant.__main__", "variant"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(
        ".", 1)[0]
    skip = set()
    for node in ast.walk(tree):  # annotation-only imports
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("variant"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("variant"):
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_layout.py"
    return best[0]


def test_every_module_has_a_layer():
    for module in _graph():
        _layer(module)


def test_imports_only_go_down():
    wrong = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
             for m, targets in sorted(_graph().items()) for t in sorted(targets)
             if _layer(t) > _layer(m)]
    assert not wrong, "\n".join(wrong)


def test_models_import_nothing_above_them():
    allowed = ("variant.models", "variant.sampling", "variant.config", "variant.units")
    for module, targets in _graph().items():
        if module.startswith("variant.models"):
            above = [t for t in targets if not t.startswith(allowed)]
            assert not above, f"{module} imports {above}"


def test_no_import_cycles():
    graph = {m: {t for t in ts if t != m} for m, ts in _graph().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


SIBLINGS = ("variant.training", "variant.tokenizer", "variant.eval", "variant.efficiency",
            "variant.analysis")
ALLOWED = {("variant.tokenizer", "variant.training")}  # the tokenizer trainer's checkpoints


@pytest.mark.parametrize("package", SIBLINGS)
def test_quality_speed_analyses_and_training_are_separate_packages(package):
    """Quality metrics (eval), speed/memory/budget tools (efficiency), the paper's analyses
    (analysis) and training live apart: none of them imports another (the CLI combines them)."""
    assert (SRC / package.split(".")[1] / "__init__.py").is_file()
    for module, targets in _graph().items():
        if module == package or module.startswith(package + "."):
            for other in SIBLINGS:
                if other != package and (package, other) not in ALLOWED:
                    reached = [t for t in targets if t == other or t.startswith(other + ".")]
                    assert not reached, f"{module} imports {reached}"
