"""``python -m benchmarks``: the repository's benchmark runner (``make bench``), outside the installed ``genrl``."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import main


def test_bench_names_and_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    assert "compare" in capsys.readouterr().err  # lists the valid names
    assert main(["render", "--args=--fast"]) == 2
    assert "takes no arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the benchmark's own parser: offline starts need data
        main(["compare", "--args=--methods genrl_offline"])


def test_every_benchmark_module_imports() -> None:
    """A benchmark is run by hand, rarely: a renamed import would only show there (benchmarks.text_grounding once
    imported a name that had moved). One fresh interpreter imports them all."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    names = sorted(p.stem for p in (root / "benchmarks").glob("*.py") if p.stem != "__init__")
    assert "text_grounding" in names and "bench_behaviour" in names
    code = "import importlib\nfor n in %r:\n    importlib.import_module('benchmarks.' + n)\n" % names
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
