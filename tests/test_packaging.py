"""Every data file the package reads ships in the wheel: pyproject's package-data covers each non-Python file."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "genrl_gym"


def _covered(rel: str, patterns: list[str]) -> bool:
    path = Path(rel)
    return any(path.match(p) or (p.endswith("/**/*") and rel.startswith(p[:-4])) for p in patterns)


def test_package_data_covers_every_data_file() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genrl_gym"]
    data = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
            if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts]
    assert "vlm/motion_verbs.json" in data and "vlm/captions.json" in data
    missing = [rel for rel in data if not _covered(rel, patterns)]
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"
