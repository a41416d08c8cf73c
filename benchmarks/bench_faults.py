"""Faults survived: ``kill -9`` at random points of ``genrl collect``, ``embed``, ``train-mfwm`` and ``train-agent``.

Run from the repo root: ``python -m benchmarks.bench_faults [--kills 3] [--seed 0] [--keep DIR]``.
Writes ``benchmarks/results/faults.json`` and ``.md``.

Every command runs as a subprocess on a tiny budget in a temporary folder. A *round* starts from fresh outputs and
reruns the same command line until it exits 0; each attempt is either

* killed with SIGKILL after a random delay (seeded; uniform in 0.3-1.0 x the command's running time estimate,
  so kills land in start-up, work, checkpoint writes and the final writes), until ``--kills`` random kills were made;
* or, in the first attempt of the injected rounds, killed by the ``GENRL_FAULT_INJECT`` hook of
  :func:`genrl_gym.utils.atomic_write` *inside* a write (temp file half written, not yet renamed): inside the 2nd
  episode file, inside ``store.json`` right after an episode was renamed into place, inside an embedding file, inside
  ``checkpoint.pt`` / ``mfwm.pt``, inside ``checkpoint.zip`` / ``agent.zip``;
* or run to the end.

After every kill, before the rerun, it checks that nothing written before the kill is lost or corrupt:

* files that are final once written (episode ``.npz`` files, embedding ``.npy`` files, and the inputs of the
  training commands) still exist with the same SHA-256 as before the killed attempt;
* the store still opens, every episode loads (CRC-checked) and every embedding file present loads with its shape;
* files rewritten as training goes (``checkpoint.pt``, ``mfwm.pt``, ``checkpoint.zip``, ``agent.zip``) load when
  present, and the checkpoints' step never goes back.

When a round finishes it checks the final outputs: exactly the asked number of episodes with distinct episode indices
and a matching ``store.json``, an embedding of every episode, ``checkpoint.pt`` at the final step and a loadable
``mfwm.pt``, an ``agent.zip`` that ``GenRLAgent.load`` reads at the final update; and no temporary file left behind.
Any failed check is a *loss*; an attempt that exits with an error instead of resuming is a *failed resume*.
Figures: rounds, runs (attempts), kills (random and injected), resumes (attempts that started after a kill), losses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrl_gym.utils import file_sha256

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tally:
    """What happened to one command."""

    rounds: int = 0
    runs: int = 0
    random_kills: int = 0
    injected_kills: int = 0
    resumes: int = 0
    failed_resumes: int = 0
    losses: int = 0
    finished_rounds: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return self.random_kills + self.injected_kills


sha256 = file_sha256


def snapshot(folders: list[Path]) -> dict[Path, str]:
    """SHA-256 of every final-once-written file under ``folders`` (episodes, embeddings, input models)."""
    out = {}
    for folder in folders:
        if folder.is_file():
            out[folder] = sha256(folder)
            continue
        for pattern in ("ep-*.npz", "embeddings/ep-*.npy"):
            for p in folder.glob(pattern):
                out[p] = sha256(p)
    return out


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------------------- checks
def check_store(root: Path, embeddings: bool) -> list[str]:
    """The store opens, every episode loads (CRC) and every present embedding loads with the right shape."""
    from genrl_gym.data import EpisodeStore
    from genrl_gym.utils import GenRLError

    if not (root / "store.json").exists():
        return []  # killed before the store existed
    try:
        store = EpisodeStore(root, create=False)
        problems = [f"{d.path}: {d.problem}" for d in store.check(with_embeddings=embeddings)]
    except GenRLError as e:
        return [str(e)]
    return problems


def check_checkpoints(out: Path, last_step: dict[str, int]) -> list[str]:
    """Checkpoints and models present load; checkpoint steps never go back (``last_step`` is updated)."""
    from genrl_gym.models import MFWM
    from genrl_gym.models.mfwm import read_torch_file
    from genrl_gym.utils import GenRLError

    problems = []
    for name in ("checkpoint.pt", "mfwm.pt", "checkpoint.zip", "agent.zip"):
        p = out / name
        if not p.exists():
            if name in last_step:
                problems.append(f"{p}: existed before the kill (step {last_step[name]}), now missing")
            continue
        try:
            if name == "checkpoint.pt":
                step = int(read_torch_file(p, "training")["step"])
            elif name == "mfwm.pt":
                MFWM.load(p)
                step = 0
            else:
                from genrl_gym.agents import GenRLAgent

                step = int(GenRLAgent.load(p, device="cpu").num_timesteps)
        except (GenRLError, OSError, KeyError, TypeError, RuntimeError) as e:
            problems.append(f"{p}: unreadable after the kill: {e}")
            continue
        if step < last_step.get(name, 0):
            problems.append(f"{p}: step went back from {last_step[name]} to {step}")
        last_step[name] = step
    return problems


def check_final(command: str, out: Path, spec: dict[str, Any]) -> list[str]:
    """The finished command's outputs are complete."""
    try:
        return _check_final(command, out, spec)
    except Exception as e:  # noqa: BLE001  (an unreadable final output is a loss, not a crash of the benchmark)
        return [f"{out}: final output unreadable: {type(e).__name__}: {e}"]


def _check_final(command: str, out: Path, spec: dict[str, Any]) -> list[str]:
    from genrl_gym.data import EpisodeStore

    problems = []
    if command in ("collect", "embed"):
        store = EpisodeStore(out, create=False)
        n = spec["episodes"]
        info = store.episode_info()
        indices = sorted(i.get("episode_index") for i in info.values() if i.get("source") == "random")
        if len(store) != n or indices != list(range(n)):
            problems.append(f"{out}: {len(store)} episodes with indices {indices}, expected {n} with 0..{n - 1}")
        if store.metadata.get("num_episodes") != n:
            problems.append(f"{out}/store.json: num_episodes {store.metadata.get('num_episodes')}, expected {n}")
        problems += check_store(out, embeddings=True)
        if command == "embed":
            missing = [p.name for p in store.paths() if not store.has_embedding(p)]
            if missing:
                problems.append(f"{out}: episodes without embeddings after embed finished: {missing}")
    elif command == "train-mfwm":
        from genrl_gym.models import MFWM
        from genrl_gym.models.mfwm import read_torch_file

        step = int(read_torch_file(out / "checkpoint.pt", "training")["step"])
        if step != spec["steps"]:
            problems.append(f"{out}/checkpoint.pt: step {step}, expected {spec['steps']}")
        MFWM.load(out / "mfwm.pt")
    else:
        from genrl_gym.agents import GenRLAgent

        agent = GenRLAgent.load(out / "agent.zip", device="cpu")
        if agent.num_timesteps != spec["steps"]:
            problems.append(f"{out}/agent.zip: {agent.num_timesteps} updates, expected {spec['steps']}")
    leftovers = temp_files(out)
    if leftovers:
        problems.append(f"{out}: temporary files left after the command finished: {[p.name for p in leftovers]}")
    return problems


# ---------------------------------------------------------------------------------------------------------- running
def attempt(argv: list[str], env: dict[str, str], kill_after: float | None, timeout: float) -> tuple[int, float, str]:
    """Run ``genrl argv`` in its own process group; SIGKILL the group after ``kill_after`` s. Returns (rc, s, stderr)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "genrl_gym.cli", *argv], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if kill_after is None:
                return -999, time.perf_counter() - t0, "timed out"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftover workers of a finished/killed command
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    return proc.returncode, time.perf_counter() - t0, tail


def run_command(command: str, argv_for: Any, prepare: Any, inputs: list[Path], spec: dict[str, Any],
                injections: list[str], kills: int, rng: np.random.Generator, estimate: float, env: dict[str, str],
                work: Path, timeout: float) -> tuple[Tally, Path]:
    """Rounds of one command until ``kills`` random kills were made and every injected fault was tried."""
    tally = Tally(injected=list(injections))
    t0 = time.perf_counter()
    pending = list(injections)
    final_out = None
    while (pending or tally.random_kills < kills or tally.finished_rounds == 0) and tally.rounds < 3 * (kills + 3):
        tally.rounds += 1
        out = work / f"{command}-{tally.rounds}"
        prepare(out)
        argv = argv_for(out)
        inject = pending.pop(0) if pending else None
        last_step: dict[str, int] = {}
        killed_before = False
        for _ in range(50):
            watched = [out] + inputs
            before = snapshot(watched)
            run_env = dict(env)
            kill_after = None
            if inject is not None:
                run_env["GENRL_FAULT_INJECT"] = inject
            elif tally.random_kills < kills:
                kill_after = float(rng.uniform(0.3, 1.0) * estimate)
            rc, seconds, err = attempt(argv, run_env, kill_after, timeout)
            tally.runs += 1
            tally.resumes += killed_before
            if rc == 0:
                if inject is not None:
                    tally.problems.append(f"round {tally.rounds}: GENRL_FAULT_INJECT={inject} never fired")
                if not killed_before:
                    estimate = max(estimate, seconds)
                problems = check_final(command, out, spec)
                tally.losses += len(problems)
                tally.problems += [f"round {tally.rounds} final: {p}" for p in problems]
                tally.finished_rounds += 1
                final_out = out
                break
            if rc != -signal.SIGKILL:
                tally.failed_resumes += 1
                tally.problems.append(f"round {tally.rounds}: exit status {rc} instead of resuming: {err[-600:]}")
                break
            if inject is not None:
                tally.injected_kills += 1
                inject = None
            else:
                tally.random_kills += 1
            killed_before = True
            problems = []
            for p, digest in before.items():
                if not p.exists():
                    problems.append(f"{p}: finalised before the kill, now missing")
                elif sha256(p) != digest:
                    problems.append(f"{p}: finalised before the kill, now changed")
            if command in ("collect", "embed"):
                problems += check_store(out, embeddings=command == "embed")
            else:
                problems += check_checkpoints(out, last_step)
            tally.losses += len(problems)
            tally.problems += [f"round {tally.rounds} after kill: {p}" for p in problems]
        else:
            tally.problems.append(f"round {tally.rounds}: did not finish in 50 attempts")
    tally.seconds = time.perf_counter() - t0
    assert final_out is not None or tally.failed_resumes
    return tally, final_out or out


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the four commands in data-flow order, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="random-delay kills per command (injected ones come on top)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--episodes", type=int, default=6, help="episodes collected")
    parser.add_argument("--episode-frames", type=int, default=60, help="physics frames per episode")
    parser.add_argument("--mfwm-steps", type=int, default=30)
    parser.add_argument("--agent-steps", type=int, default=9)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds an attempt may run")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp folder)")
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env.pop("GENRL_FAULT_INJECT", None)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_faults_"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    E, S, A = args.episodes, args.mfwm_steps, args.agent_steps

    def fresh(out: Path) -> None:
        shutil.rmtree(out, ignore_errors=True)

    tallies: dict[str, Tally] = {}
    common = dict(kills=args.kills, rng=rng, env=env, work=work, timeout=args.timeout)

    collect_argv = ["--domain", "walker", "--task", "stand", "--episodes", str(E), "--episode-frames",
                    str(args.episode_frames), "--seed", str(args.seed)]
    tallies["collect"], data = run_command(
        "collect", lambda out: ["collect", *collect_argv, "--out", str(out)], fresh, [], {"episodes": E},
        ["ep-*.npz:2", "store.json:4"], estimate=12.0, **common)

    def copy_store(out: Path) -> None:
        fresh(out)
        shutil.copytree(data, out, ignore=shutil.ignore_patterns("embeddings", ".*.tmp"))

    tallies["embed"], embedded = run_command(
        "embed", lambda out: ["embed", "--data", str(out), "--batch-size", "16"], copy_store, [data],
        {"episodes": E}, ["ep-*.npy:2", "store.json:1"], estimate=10.0, **common)

    tallies["train-mfwm"], mfwm = run_command(
        "train-mfwm", lambda out: ["train-mfwm", "--data", str(embedded), "--out", str(out), "--preset", "tiny",
                                   "--steps", str(S), "--checkpoint-every", "5", "--seed", str(args.seed)],
        fresh, [embedded], {"steps": S}, ["checkpoint.pt:2", "mfwm.pt:1"], estimate=20.0, **common)

    model = mfwm / "mfwm.pt"
    tallies["train-agent"], _ = run_command(
        "train-agent", lambda out: ["train-agent", "--model", str(model), "--prompt", "walker/stand", "--out", str(out),
                                    "--preset", "tiny", "--steps", str(A), "--checkpoint-every", "3", "--device", "cpu",
                                    "--seed", str(args.seed)],
        fresh, [model], {"steps": A}, ["checkpoint.zip:2", "agent.zip:1"], estimate=25.0, **common)

    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    command = "python -m benchmarks.bench_faults" + (" " + shlex.join(argv if argv is not None else sys.argv[1:]))
    results = {"command": command.strip(), "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "loadavg_before": load_before, "commands": {}}
    rows = ["| command | rounds | runs | kills (random + injected) | resumes | failed resumes | losses | time (s) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, t in tallies.items():
        results["commands"][name] = {"rounds": t.rounds, "runs": t.runs, "kills": t.kills, "random_kills": t.random_kills,
                                     "injected_kills": t.injected_kills, "injected_faults": t.injected,
                                     "resumes": t.resumes, "failed_resumes": t.failed_resumes, "losses": t.losses,
                                     "finished_rounds": t.finished_rounds, "seconds": round(t.seconds, 1),
                                     "problems": t.problems}
        rows.append(f"| genrl {name} | {t.rounds} | {t.runs} | {t.kills} ({t.random_kills} + {t.injected_kills}) | "
                    f"{t.resumes} | {t.failed_resumes} | {t.losses} | {t.seconds:.0f} |")
    total_losses = sum(t.losses + t.failed_resumes for t in tallies.values())
    results["total_losses_and_failed_resumes"] = total_losses
    notes = (f"Command: `{results['command']}` (load average before: {', '.join(f'{x:.1f}' for x in load_before)}).\n\n"
             f"Budgets: collect walker/stand {E} episodes of {args.episode_frames} frames; embed with the video-only VLM; "
             f"train-mfwm tiny preset {S} updates, checkpoint every 5; train-agent tiny preset {A} updates, checkpoint "
             "every 3. Injected faults (GENRL_FAULT_INJECT, kill inside that atomic write, one fresh round each): "
             + "; ".join(f"{n}: {', '.join(t.injected)}" for n, t in tallies.items()) + ".\n\n"
             "A loss is a file finalised before a kill that is missing, changed or unreadable after it, a checkpoint "
             "whose step went back, or an incomplete final output; a failed resume is a rerun that exited with an "
             "error. See the module docstring of benchmarks/bench_faults.py for the checks.")
    problems = [f"- {n}: {p}" for n, t in tallies.items() for p in t.problems]
    if problems:
        notes += "\n\nProblems:\n" + "\n".join(problems)
    from benchmarks._machine import write_results

    path = write_results("faults", results, "\n".join(rows), notes, results_dir=args.results_dir)
    print("\n".join(rows))
    print(f"losses + failed resumes: {total_losses}; results: {path}")
    if total_losses:
        sys.exit(1)


if __name__ == "__main__":
    main()
