"""The package's layers, enforced: each module imports only its own layer and the ones below it,
and no two modules import each other, directly or through others (plain ``ast``, every import
counted, those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import ddd_support

PACKAGE = Path(ddd_support.__file__).resolve().parent
#: Lowest first; a module may import from its own layer and from the layers before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "files", "config"),
    ("data", "models"),
    ("runs",),
    ("train",),
    ("analysis",),
    ("sweeps",),
    ("figures",),
    ("book",),
    ("cli", "__main__"),
)
#: Optional heavy dependencies that may only be imported inside functions, and where.
LAZY_ONLY = {"dask", "distributed", "dask_jobqueue", "playwright", "papermill", "jupytext"}
#: What a function may import besides those: the notebook format and the image readers that only
#: reading the source images needs. Everything else is imported at the top of its module.
LAZY_ALLOWED = LAZY_ONLY | {"nbformat", "PIL", "torchvision"}
#: Modules that import each command's modules inside its handler, so that ``--help``, ``profiles``
#: and usage errors answer without loading torch.
LAZY_BY_DESIGN = {"cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[0] if module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module ddd_support.{module} is in no layer: add its folder to LAYERS")


def internal_imports(path: Path) -> list[tuple[str, int]]:
    """(imported module relative to ddd_support, line) of every import of the package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; import ddd_support.... absolutely")
        names = ([node.module] if isinstance(node, ast.ImportFrom) else
                 [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            if name and (name == "ddd_support" or name.startswith("ddd_support.")):
                module = name[len("ddd_support."):] if "." in name else ""
                if isinstance(node, ast.ImportFrom):
                    # `from ddd_support.x import y` may name a submodule y
                    for alias in node.names:
                        sub = f"{module}.{alias.name}".strip(".")
                        found.append((sub if (PACKAGE / sub.replace(".", "/")).with_suffix(".py").exists()
                                      or (PACKAGE / sub.replace(".", "/")).is_dir() else module, node.lineno))
                else:
                    found.append((module, node.lineno))
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_points_to_the_same_or_a_lower_layer():
    wrong = []
    for name, path in modules().items():
        for target, line in internal_imports(path):
            if target and layer_of(target) > layer_of(name):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: ddd_support.{name} "
                             f"(layer {layer_of(name)}) imports ddd_support.{target} (layer {layer_of(target)})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules():
    mods = modules()
    graph = {name: {t for t, _ in internal_imports(path) if t and t != name and t in mods} for name, path in mods.items()}
    # a package's __init__ is imported with each of its modules: count that edge too
    for name in mods:
        parent = name.rsplit(".", 1)[0] if "." in name else None
        if parent in mods:
            graph[name].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(f"ddd_support.{m}" for m in cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_optional_heavy_dependencies_are_imported_only_inside_functions():
    top_level = []
    for name, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            top_level += [f"ddd_support.{name}: {n}" for n in names if n.split(".")[0] in LAZY_ONLY]
    assert not top_level, f"optional dependencies imported at module level: {top_level}"


def test_other_imports_are_at_the_top_of_their_module():
    inside = []
    for name, path in modules().items():
        if name in LAZY_BY_DESIGN:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                names = ([sub.module or ""] if isinstance(sub, ast.ImportFrom) and not sub.level else
                         [a.name for a in sub.names] if isinstance(sub, ast.Import) else
                         ["." * sub.level + (sub.module or "")] if isinstance(sub, ast.ImportFrom) else [])
                inside += [f"ddd_support.{name}.{node.name}: {n}" for n in names
                           if n.split(".")[0] not in LAZY_ALLOWED]
    assert not inside, f"imports inside functions (move them to the top of the module): {sorted(set(inside))}"


def test_the_layer_test_finds_a_planted_upward_import(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from ddd_support.book.run import main\n")
    targets = [t for t, _ in internal_imports(planted)]
    assert targets == ["book.run"] and layer_of("book.run") > layer_of("runs.schema")
