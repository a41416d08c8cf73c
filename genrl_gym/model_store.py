"""Find a multimodal-foundation world model (MFWM) by path or by name, loading each file once per process.

``model=`` arguments across genrl-gym (``gym.make("GenRL/Walker-v0", model=...)``, the SB3 reward wrapper, the agent) take:

1. an :class:`~genrl_gym.models.MFWM` instance (used as is);
2. a path to an existing checkpoint file, or to a directory holding one (``model.pt``, ``mfwm.pt``, ``mfwm/mfwm.pt`` as
   ``genrl pipeline --out DIR`` writes it, or a single ``*.pt``);
3. a *name* (``"walker"``), looked up first in the local store ``$GENRL_HOME/models/<name>.pt`` or
   ``$GENRL_HOME/models/<name>/`` (``GENRL_HOME`` defaults to ``~/.cache/genrl_gym``), then among the small models
   shipped in the package (``genrl_gym/pretrained/<name>/``). The one used is logged at INFO level.

A name found in neither place is a :class:`~genrl_gym.utils.CheckpointError` that says how to train a model and where to
put it; nothing falls back silently to another model.

Loaded models are cached per process, keyed by the resolved file path, its modification time and size, and the
``map_location``, so that the many ``gym.make`` calls of ``check_env``, vector envs and evaluation loops share one copy
of the weights. Cached models are in eval mode and must be treated as read-only: whoever wants to fine-tune one should
load a private copy with ``MFWM.load``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from genrl_gym.models import MFWM, CheckpointNotFoundError
from genrl_gym.utils import DEFAULT_GENRL_HOME, GENRL_HOME_ENV, CheckpointError, VLMError, genrl_home
from genrl_gym.vlm.grounding import GROUNDING_FILE, TextGrounding

if TYPE_CHECKING:
    from genrl_gym.models import MFWM
    from genrl_gym.vlm.grounding import TextGrounding

__all__ = ["GENRL_HOME_ENV", "DEFAULT_GENRL_HOME", "PRETRAINED_DIR", "genrl_home", "models_dir", "resolve_model",
           "resolve_model_path", "clear_model_cache", "model_cache_info", "load_text_grounding"]

logger = logging.getLogger(__name__)

#: Directory of the models shipped inside the package.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: File names (in order) that mark a directory's checkpoint; ``mfwm/mfwm.pt`` is where ``genrl pipeline --out DIR`` puts it.
_DIR_CHECKPOINT_NAMES = ("model.pt", "mfwm.pt", "mfwm/mfwm.pt")
#: Training-state checkpoints written beside the model by the trainer (not MFWM files).
_NOT_MODELS = ("checkpoint.pt",)

_CACHE: dict[tuple[str, int, int, str], MFWM] = {}
_LOCK = threading.RLock()


def models_dir() -> Path:
    """Where named models live in the local store: ``genrl_home() / "models"``."""
    return genrl_home() / "models"


def _checkpoint_in_dir(directory: Path) -> Path | None:
    """The checkpoint file inside a model directory: ``model.pt``, ``mfwm.pt`` or ``mfwm/mfwm.pt``, else its only ``*.pt``
    (trainer state ``checkpoint.pt`` excluded)."""
    for name in _DIR_CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    candidates = sorted(p for p in directory.glob("*.pt") if p.is_file() and p.name not in _NOT_MODELS)
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise CheckpointError(f"model directory {directory} holds several checkpoints ({names}); "
                              f"name the one to use model.pt or pass its path")
    return None


def _train_hint(name: str) -> str:
    store = models_dir()
    return (f"Train one with\n"
            f"    genrl pipeline --domain {name if name in _KNOWN_DOMAINS else '<domain>'} --preset cpu --out runs/{name}\n"
            f"then either pass the checkpoint path (model='runs/{name}/mfwm/mfwm.pt', or the run folder) or copy it to "
            f"{store / (name + '.pt')} "
            f"(the local store; set ${GENRL_HOME_ENV} to move it, now {genrl_home()}).")


_KNOWN_DOMAINS = ("walker", "cheetah", "quadruped", "stickman", "kitchen")


def resolve_model_path(model: str | os.PathLike[str]) -> tuple[Path, str]:
    """Resolve a model path or name to a checkpoint file, without loading it.

    :param model: path to a checkpoint file or model directory, or a model name.
    :return: ``(checkpoint file, source)`` where source is ``"path"``, ``"store"`` or ``"pretrained"``.
    :raises CheckpointError: a name with no model in the store nor in the package (the message says how to train one),
        or a directory without a checkpoint.
    :raises CheckpointNotFoundError: (a CheckpointError and FileNotFoundError) a path-like argument (contains a separator
        or ends in ``.pt``) that does not exist.
    """
    text = os.fspath(model)
    if not isinstance(text, str) or not text.strip():
        raise CheckpointError(f"model must be a checkpoint path or a model name, got {model!r}")
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            ckpt = _checkpoint_in_dir(path)
            if ckpt is None:
                raise CheckpointError(f"model directory {path} holds no checkpoint (expected model.pt, mfwm.pt, mfwm/mfwm.pt "
                                      "or one *.pt file)")
            return ckpt.resolve(), "path"
        return path.resolve(), "path"
    looks_like_path = isinstance(model, os.PathLike) or os.sep in text or "/" in text or text.endswith((".pt", ".pth", ".zip"))
    if looks_like_path:
        raise CheckpointNotFoundError(f"model checkpoint {path} does not exist. Pass the path of an MFWM checkpoint written "
                                      f"by `genrl pipeline`/`genrl train-mfwm` (or MFWM.save), or a model name.\n"
                                      + _train_hint(path.stem))
    name = text
    store_file = models_dir() / f"{name}.pt"
    if store_file.is_file():
        return store_file.resolve(), "store"
    store_dir = models_dir() / name
    if store_dir.is_dir():
        ckpt = _checkpoint_in_dir(store_dir)
        if ckpt is not None:
            return ckpt.resolve(), "store"
    shipped = PRETRAINED_DIR / name
    if shipped.is_dir():
        ckpt = _checkpoint_in_dir(shipped)
        if ckpt is not None:
            return ckpt.resolve(), "pretrained"
    available = sorted(available_models())
    listing = f"Models available by name: {', '.join(available)}. " if available else "No named models are installed. "
    raise CheckpointError(f"no world model named {name!r}: looked for {store_file}, {store_dir}/ and the shipped "
                          f"{shipped}/. {listing}\n" + _train_hint(name))


def available_models() -> dict[str, Path]:
    """Names resolvable without a path -> checkpoint file (local store entries shadow shipped ones)."""
    found: dict[str, Path] = {}
    for root in (PRETRAINED_DIR, models_dir()):  # store second so that it wins
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if entry.is_file() and entry.suffix == ".pt":
                found[entry.stem] = entry
            elif entry.is_dir():
                try:
                    ckpt = _checkpoint_in_dir(entry)
                except CheckpointError:
                    continue
                if ckpt is not None:
                    found[entry.name] = ckpt
    return found


def _check_domain(model: MFWM, domain: str | None, where: str) -> None:
    if domain is None:
        return
    model_domain = getattr(model, "domain", None)
    if model_domain and model_domain != domain:
        raise CheckpointError(f"{where} is a world model of the {model_domain!r} domain and cannot score {domain!r} "
                              f"observations; pass a {domain} model (e.g. model={domain!r} or the path of a {domain} "
                              f"checkpoint)")


def resolve_model(model: str | os.PathLike[str] | MFWM, *, domain: str | None = None,
                  map_location: str = "cpu") -> MFWM:
    """Return a ready (eval-mode) MFWM for a path, a name or an instance; load each file once per process.

    :param model: an MFWM instance, a checkpoint path (file or directory) or a model name (see the module docstring).
    :param domain: if given, the model's domain must equal it (e.g. ``"walker"``).
    :param map_location: torch device the weights are loaded to (part of the cache key).
    :return: the model (shared with other callers in this process when loaded from a file; treat it as read-only).
    :raises CheckpointError: unknown name (with how to train one), wrong domain, or a corrupt/foreign checkpoint.
    :raises FileNotFoundError: a path that does not exist.
    """
    if isinstance(model, MFWM):
        _check_domain(model, domain, "the model passed")
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be an MFWM, a checkpoint path or a model name, got {type(model).__name__}")
    path, source = resolve_model_path(model)
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, str(map_location))
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            # drop stale entries of the same file (rewritten checkpoint) so the cache doesn't pin old weights
            for old in [k for k in _CACHE if k[0] == key[0] and k[3] == key[3]]:
                del _CACHE[old]
            if source == "path":
                logger.info("loading world model %s", path)
            else:
                logger.info("world model %r resolved to the %s copy %s", os.fspath(model),
                            "local store" if source == "store" else "shipped pretrained", path)
            cached = MFWM.load(path, map_location=map_location)
            cached.eval()
            cached.text_grounding = load_text_grounding(path, cached)
            _CACHE[key] = cached
    _check_domain(cached, domain, f"model {os.fspath(model)!r} ({path})")
    return cached


def load_text_grounding(checkpoint: str | os.PathLike[str], model: MFWM) -> TextGrounding | None:
    """The text grounding saved beside a checkpoint (``grounding.npz`` in its folder), checked against the model's VLM,
    or None when there is none (see :mod:`genrl_gym.vlm.grounding`).

    An unreadable grounding, one fitted for another VLM space or for other weights is ignored with a warning that says
    how to refit it (the model still works with video prompts).
    """
    file = Path(checkpoint).parent / GROUNDING_FILE
    if not file.is_file():
        return None
    try:
        grounding = TextGrounding.load(file, expect_vlm=model._vlm)
    except VLMError as e:  # the model itself is fine: video prompts keep working, text is refused
        logger.warning("ignoring the text grounding beside %s: %s", checkpoint, e)
        return None
    fitted_for = grounding.info.get("model_weights_sha256")
    if fitted_for and fitted_for != model.weights_sha256():
        logger.warning("ignoring the text grounding %s: it was fitted for other weights of this model (sha256 %s); "
                       "refit it with `genrl ground --model %s`", file, fitted_for[:12], Path(checkpoint).parent)
        return None
    logger.info("text grounding %s: %s text behaviours %s", file, grounding.encoder, ", ".join(grounding.behaviours))
    return grounding


def clear_model_cache() -> None:
    """Forget every cached model (the next :func:`resolve_model` reloads from disk)."""
    with _LOCK:
        _CACHE.clear()


def model_cache_info() -> list[str]:
    """Paths of the models currently cached in this process (for diagnostics and tests)."""
    with _LOCK:
        return [k[0] for k in _CACHE]
