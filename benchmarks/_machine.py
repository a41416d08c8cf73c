"""Machine description and result writing shared by every benchmark script."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from genrl_gym.utils import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory, GPU (if any) and library versions of this machine."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem_gib = round(mem_kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "git_commit": commit,
    }


def write_results(name: str, results: dict[str, Any], table: str, notes: str = "",
                  results_dir: Path | None = None) -> Path:
    """Write ``<name>.json`` (results + machine) and ``<name>.md`` (title, machine, table, notes) into ``results_dir``
    (default ``benchmarks/results``)."""
    machine = machine_info()
    payload = {"benchmark": name, "machine": machine, "results": results}
    out = RESULTS if results_dir is None else Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / f"{name}.json", "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
    gpu = machine["gpu"] or "no GPU"
    md = (f"# {name}\n\nMachine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {gpu}; "
          f"torch {machine['torch']} ({machine['torch_threads']} threads), commit {machine['git_commit']}.\n\n"
          f"{table.strip()}\n")
    if notes:
        md += f"\n{notes.strip()}\n"
    with atomic_write(out / f"{name}.md", "w") as f:
        f.write(md)
    return out / f"{name}.json"


REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_relative(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository root when it lies inside it (e.g. ``genrl_gym/pretrained/walker/prompts/
    run.gif``, the same on every clone), else unchanged, so results name files without the machine's checkout path."""
    p = Path(path)
    try:
        return Path(os.path.abspath(p)).relative_to(REPO_ROOT).as_posix()
    except ValueError:  # a shipped file of another clone of the repository (a run from a second checkout)
        parts = Path(os.path.abspath(p)).parts
        for i in range(len(parts) - 1):
            if parts[i:i + 2] == ("genrl_gym", "pretrained"):
                return Path(*parts[i:]).as_posix()
        return str(path)


def reproduce_command(module: str, *options: tuple[str, Any]) -> str:
    """The command line that reruns a benchmark: ``python -m <module>`` then ``--<flag> <value>`` for each option.

    :param module: the benchmark module, e.g. ``"benchmarks.bench_behaviour"``.
    :param options: ``(flag, value)`` pairs in order; a value of None or False leaves the flag out, True gives the bare
        flag, a list or tuple its items separated by spaces, anything else its ``str`` (format numbers and quote JSON
        before passing them).
    """
    parts = ["python -m", module]
    for flag, value in options:
        if value is None or value is False:
            continue
        parts.append(f"--{flag}")
        if value is True:
            continue
        parts.append(" ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    return " ".join(parts)
