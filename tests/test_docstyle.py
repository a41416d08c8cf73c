"""One docstring style: Sphinx fields (``:param x:``, ``:return:``, ``:raises E:``), as Stable-Baselines3 writes them.

ruff's pydocstyle rules (pyproject.toml) check layout and quoting but have no Sphinx convention, so this test rejects
the section headers of the other two styles in every docstring of the package, the benchmarks and the examples.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: "Args:" (Google) or "Parameters" underlined with dashes (NumPy), alone on a line.
_GOOGLE = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Attributes|Keyword Args):\s*$", re.M)
_NUMPY = re.compile(r"^\s*(Parameters|Returns|Raises|Yields|Attributes|See Also|Notes|Examples)\s*\n\s*-{3,}\s*$", re.M)


def _docstrings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    out = []
    for node in nodes:
        doc = ast.get_docstring(node, clean=False)
        if doc:
            out.append((getattr(node, "lineno", 1), doc))
    return out


def _offenders(paths: list[Path]) -> list[str]:
    return [f"{p}:{line}" for p in paths for line, doc in _docstrings(p)
            if _GOOGLE.search(doc) or _NUMPY.search(doc)]


def test_docstrings_use_sphinx_fields() -> None:
    paths = [p for folder in ("genrl_gym", "benchmarks", "examples") for p in sorted((ROOT / folder).rglob("*.py"))]
    bad = _offenders(paths)
    assert not bad, "Google/NumPy docstring sections (write :param x: / :return: / :raises E: instead):\n" + "\n".join(bad)


def test_the_check_sees_other_styles(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('def f(a):\n    """Do.\n\n    Args:\n        a: x.\n    """\n\n\n'
                      'def g(a):\n    """Do.\n\n    Parameters\n    ----------\n    a : int\n    """\n\n\n'
                      'def h(a):\n    """Do.\n\n    :param a: x.\n    """\n')
    assert [s.rsplit(":", 1)[1] for s in _offenders([sample])] == ["1", "9"]
