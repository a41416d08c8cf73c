"""Run benchmarks from the repository root: ``python -m benchmarks [NAME ...] [--args="..."]`` (``make bench``).

Without names: the quick ones (seconds to minutes each). Every benchmark is also a module of its own
(``python -m benchmarks.bench_<name> --help``, ``python -m benchmarks.compare --help``); this runner only runs several
in a row. Benchmarks are part of the repository, not of the installed ``genrl`` command.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shlex
import sys
from collections.abc import Sequence

#: Benchmarks of seconds to minutes each; ``python -m benchmarks`` runs these.
QUICK_BENCHMARKS = ("render", "collect", "vlm", "world_model", "reward", "agent")
#: Benchmarks of minutes to hours; run by name.
LONG_BENCHMARKS = ("behaviour", "compare", "faults")


def module_name(name: str) -> str:
    """The module of benchmark ``name`` (``compare`` -> ``benchmarks.compare``, else ``benchmarks.bench_<name>``)."""
    return "benchmarks.compare" if name == "compare" else f"benchmarks.bench_{name}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named benchmarks (default: the quick ones); return 0, or 2 after a usage error."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="Run benchmarks (results in benchmarks/results/).")
    p.add_argument("names", nargs="*", help=f"quick: {' '.join(QUICK_BENCHMARKS)} (default: these); long (minutes to "
                   f"hours): {' '.join(LONG_BENCHMARKS)}")
    p.add_argument("--args", default="", help="arguments for the benchmarks' own parsers, written with '=', e.g. "
                   "--args=\"--domain walker --seconds 90 --offline-data runs/walker-pipeline/data\"")
    args = p.parse_args(argv)
    names = args.names or list(QUICK_BENCHMARKS)
    extra = shlex.split(args.args) if args.args else []
    for name in names:
        if name not in QUICK_BENCHMARKS + LONG_BENCHMARKS:
            print(f"{p.prog}: error: unknown benchmark {name!r}; choose from "
                  f"{', '.join(QUICK_BENCHMARKS + LONG_BENCHMARKS)}", file=sys.stderr)
            return 2
    for name in names:
        mod = importlib.import_module(module_name(name))
        print(f"== bench {name}")
        if "argv" in inspect.signature(mod.main).parameters:
            mod.main(extra)
        elif extra:
            print(f"{p.prog}: error: benchmark {name!r} takes no arguments (got --args {args.args!r})", file=sys.stderr)
            return 2
        else:
            mod.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
