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
