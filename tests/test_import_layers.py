"""Imports follow the data flow: envs -> data -> vlm -> models -> prompts -> reward -> wrappers / agents / training ->
cli / demo. An AST check over genrl_gym/: no module imports a later layer, no private name crosses modules, and
imports sit at module level except the documented exceptions (optional extras, heavy text tower, the cheap entry point).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "genrl_gym"

#: Layers in data-flow order; a module may import its own layer and the ones before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("genrl_gym._compat", "genrl_gym.utils", "genrl_gym._argparse_dataclass"),
    ("genrl_gym.envs",),
    ("genrl_gym.data",),
    ("genrl_gym.vlm",),
    ("genrl_gym.models", "genrl_gym.model_store"),
    ("genrl_gym.prompts",),
    ("genrl_gym.reward",),
    ("genrl_gym.wrappers", "genrl_gym.registration", "genrl_gym.agents", "genrl_gym.training", "genrl_gym.sb3_compat",
     "genrl_gym.pictures"),
    ("genrl_gym.cli", "genrl_gym.demo", "genrl_gym"),
)

#: Imports allowed inside functions: optional extras, the sentence encoder (a second of import time, loaded when text
#: is first embedded), the render guard, and the registration, which ``import genrl_gym`` runs and must stay cheap.
LAZY_MODULES = ("open_clip", "huggingface_hub", "gymnasium_robotics", "sentence_transformers", "transformers", "torch._dynamo",
                "importlib")
LAZY_IMPORTERS = ("genrl_gym.registration",)


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(path.read_text(), filename=str(path))
    return out


def _layer(module: str) -> int:
    best, length = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = i, len(p)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str, list[str]]]:
    """``(node, imported module, imported names)``; ``from genrl_gym import x`` counts as module ``genrl_gym.x``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [a.name for a in node.names]
            if node.module == "genrl_gym":
                out.extend((node, f"genrl_gym.{n}", []) for n in names)
            else:
                out.append((node, node.module, names))
        elif isinstance(node, ast.Import):
            out.extend((node, a.name, []) for a in node.names)
    return out


def _function_imports(tree: ast.Module) -> set[int]:
    return {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}


def test_no_module_imports_a_later_layer() -> None:
    bad = [f"{mod} (layer {_layer(mod)}) imports {target} (layer {_layer(target)}), line {node.lineno}"
           for mod, tree in _modules().items() for node, target, _ in _imports(tree)
           if target.startswith("genrl_gym") and _layer(target) > _layer(mod)]
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_no_private_name_is_imported_across_modules() -> None:
    bad = [f"{mod}:{node.lineno} imports {target}.{n}" for mod, tree in _modules().items()
           for node, target, names in _imports(tree) if target.startswith("genrl_gym")
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names used across modules (make them public or move them):\n" + "\n".join(bad)


def test_imports_are_at_module_level() -> None:
    bad = []
    for mod, tree in _modules().items():
        inner = _function_imports(tree)
        for node, target, _ in _imports(tree):
            if id(node) not in inner or mod in LAZY_IMPORTERS or target == "genrl_gym._compat":
                continue
            if any(target == m or target.startswith(m + ".") for m in LAZY_MODULES):
                continue
            bad.append(f"{mod}:{node.lineno} imports {target} inside a function")
    assert not bad, "imports hidden inside functions:\n" + "\n".join(bad)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """Control: an upward import and a hidden import in a synthetic module are found."""
    tree = ast.parse("from genrl_gym.wrappers import GenRLReward\ndef f():\n    import numpy\n")
    targets = [t for _, t, _ in _imports(tree)]
    assert _layer("genrl_gym.envs.fake") < _layer(targets[0])
    assert len(_function_imports(tree)) == 1
