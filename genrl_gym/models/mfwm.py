"""The multimodal-foundation world model (MFWM) bundle: world model + connector + aligner, with its provenance.

One checkpoint file (``torch.save`` zip, loaded with ``weights_only=True``) holds a format tag and version, the config
as JSON, the state dict (fp32, or fp16 with ``save(path, half=True)``; restored to fp32), a SHA-256 of the weights, the
VLM identity, the domain, the render settings and free-form metadata. Written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from genrl_gym.models.aligner import Aligner
from genrl_gym.models.connector import Connector
from genrl_gym.models.presets import MFWMConfig
from genrl_gym.models.rssm import State
from genrl_gym.models.world_model import WorldModel
from genrl_gym.utils import CheckpointError, atomic_write
from genrl_gym.vlm import VLMIdentity

if TYPE_CHECKING:
    from genrl_gym.vlm.grounding import TextGrounding

__all__ = ["MFWM", "FORMAT_TAG", "FORMAT_VERSION", "CheckpointNotFoundError", "identity_dict"]

FORMAT_TAG = "genrl_gym.mfwm"
FORMAT_VERSION = 1


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (both a CheckpointError and a FileNotFoundError)."""


def identity_dict(vlm: Any) -> dict[str, Any] | None:
    """Normalise a VLM, a ``VLMIdentity``, a dict or None to a plain dict (or None) for comparison and storage."""
    if vlm is None:
        return None
    if hasattr(vlm, "identity") and not isinstance(vlm, dict):
        vlm = vlm.identity
    if hasattr(vlm, "to_dict"):
        vlm = vlm.to_dict()
    if isinstance(vlm, dict):
        return {str(k): v for k, v in vlm.items()}
    raise TypeError(f"cannot read a VLM identity from {type(vlm).__name__}: pass a VLM, a VLMIdentity or a dict")


def identity_str(d: dict[str, Any] | None) -> str:
    if d is None:
        return "<no VLM recorded>"
    try:
        return str(VLMIdentity.from_dict(d))
    except Exception:  # vlm package unavailable or a record of another version
        return json.dumps(d, sort_keys=True, default=str)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into ``module``'s parameters (they still flow *through* it)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _digest(state_dict: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class MFWM(nn.Module):
    """World model + connector + aligner of one domain, trained with one VLM.

    Attributes: ``config``, ``domain``, ``vlm_identity`` (a ``VLMIdentity`` when :mod:`genrl_gym.vlm` is importable, else a
    dict), ``render_settings``, ``metadata``; submodules ``world_model``, ``connector``, ``aligner``.
    Images are uint8 ``[..., 64, 64, 3]``; stoch ``S*C``; deter ``Dd``; reward features ``F = 32 * cnn_depth``.
    """

    # set by genrl_gym.model_store (loading) and genrl_gym.training.grounding (fitting); unset on a bare MFWM
    text_grounding: TextGrounding | None

    def __init__(self, config: MFWMConfig, *, domain: str = "unknown", vlm_identity: Any = None,
                 render_settings: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        self.domain = domain
        self._vlm = identity_dict(vlm_identity)
        if self._vlm is not None and "embed_dim" in self._vlm and int(self._vlm["embed_dim"]) != config.embed_dim:
            raise ValueError(f"VLM {identity_str(self._vlm)} embeds in {self._vlm['embed_dim']} dims but "
                             f"config.embed_dim={config.embed_dim}")
        self.render_settings = dict(render_settings or {})
        self.metadata = dict(metadata or {})
        self.world_model = WorldModel(config.world_model, config.action_dim)
        self.connector = Connector(config.connector, config.world_model, config.embed_dim)
        self.aligner = Aligner(config.embed_dim, config.aligner)

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def vlm_identity(self) -> Any:
        """The VLM this model was trained with (``VLMIdentity`` if the vlm package is available, else dict; None if unset)."""
        if self._vlm is None:
            return None
        try:
            return VLMIdentity.from_dict(self._vlm)
        except Exception:  # vlm package missing or an identity from another version: keep the raw record
            return dict(self._vlm)

    @vlm_identity.setter
    def vlm_identity(self, value: Any) -> None:
        self._vlm = identity_dict(value)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def _t(self, x: Any, dtype: torch.dtype | None = None) -> Tensor:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, device=self.device)
        return x.to(dtype) if dtype is not None else x

    # ------------------------------------------------------------------------------------------------ world model
    def initial_state(self, batch: int) -> State:
        """Zero state ``[batch]`` on the model's device."""
        return self.world_model.rssm.initial(batch, self.device)

    def obs_step(self, prev: State, prev_action: Any, image: Any, is_first: Any, sample: bool = True,
                 generator: torch.Generator | None = None) -> State:
        """Posterior after one frame. ``prev [B]``, ``prev_action [B, A]`` (the action that led to ``image``), ``image uint8
        [B, 64, 64, 3]``, ``is_first bool [B]`` (resets state and action) -> ``State [B]`` (deter from the GRU, stoch from the
        current image only)."""
        wm = self.world_model
        post, _ = wm.rssm.obs_step(prev, self._t(prev_action, torch.float32), wm.encode(self._t(image)),
                                   self._t(is_first, torch.bool), sample, generator)
        return post

    def observe(self, images: Any, actions: Any, is_first: Any, state: State | None = None, sample: bool = True,
                generator: torch.Generator | None = None) -> tuple[State, State]:
        """Filter sequences: ``images uint8 [B, T, 64, 64, 3]``, ``actions [B, T, A]`` (actions[t] led to images[t]),
        ``is_first bool [B, T]`` -> ``(post, prior)``, States ``[B, T]``."""
        return self.world_model.observe(self._t(images), self._t(actions, torch.float32), self._t(is_first, torch.bool),
                                        state, sample, generator)

    def img_step(self, prev: State, action: Tensor, sample: bool = True, generator: torch.Generator | None = None) -> State:
        """Prior step: ``prev State [B]``, ``action [B, A]`` -> ``State [B]``."""
        return self.world_model.rssm.img_step(prev, action, sample, generator)

    def imagine(self, policy: Callable[[State], Tensor], start: State, horizon: int, sample: bool = True,
                detach_policy_input: bool = True) -> tuple[State, Tensor]:
        """Roll ``policy`` through the prior for ``horizon`` steps from ``start [B]``.

        Returns time-major ``(states [H+1, B], actions [H, B, A])`` with ``states[0] = start``. Gradients flow from the
        states back to the actions (dynamics backpropagation); the world model's parameters are frozen during the rollout
        and receive none from it (features computed afterwards with :meth:`reward_features` do reach the decoder's first
        Linear, which a behaviour optimiser simply does not own). The policy sees detached states (the reference's actor
        input).
        """
        states, actions, state = [start], [], start
        with _frozen(self.world_model):
            for _ in range(horizon):
                action = policy(state.detach() if detach_policy_input else state)
                state = self.world_model.rssm.img_step(state, action, sample)
                states.append(state)
                actions.append(action)
        return State.stack(states, 0), torch.stack(actions, 0)

    @property
    def reward_align(self) -> str:
        """The reward alignment this model was checked with (``metadata["align"]``, set by ``genrl export --align``;
        models exported before the setting had one name say ``metadata["reward_align"]``, still read; ``"sequence"``,
        the reference's, when absent). Envs, wrappers, agents and reports use it when no ``align`` is given. (Not
        ``MFWM.align``: that is the aligner, :meth:`align`.)"""
        return str(self.metadata.get("align", self.metadata.get("reward_align", "sequence")))

    def reward_features(self, stoch: Tensor) -> Tensor:
        """The decoder's first Linear (with bias) on one-hot ``stoch [..., S*C]`` -> ``[..., F]``, F = 32 * cnn_depth."""
        return self.world_model.features(stoch)

    def decode(self, stoch: Tensor) -> Tensor:
        """``stoch [..., S*C]`` -> float images ``[..., 64, 64, 3]`` in [0, 1] (decoder mean + 0.5, clamped)."""
        return (self.world_model.decode(stoch) + 0.5).clamp(0, 1).movedim(-3, -1)

    # ------------------------------------------------------------------------------------------------ connector/aligner
    def align(self, embeddings: Tensor) -> Tensor:
        """Aligner: ``embeddings [..., D]`` -> unit-norm ``[..., D]`` moved onto the vision-embedding manifold."""
        return self.aligner(self._t(embeddings, torch.float32))

    def connector_rollout(self, embeddings: Any, *, sample: bool = False, align: bool = False,
                          generator: torch.Generator | None = None) -> State:
        """Imagine latents from unit-norm ``embeddings [B, T, D]`` -> ``State [B, T]`` (``align=True``: aligner first;
        ``sample=False``: modes after the sampled initial stoch; ``generator`` seeds the sampling)."""
        e = self._t(embeddings, torch.float32)
        if e.ndim != 3 or e.shape[-1] != self.config.embed_dim:
            raise ValueError(f"embeddings must be [B, T, {self.config.embed_dim}], got {tuple(e.shape)}")
        return self.connector.rollout(self.aligner(e) if align else e, sample, generator)

    # ------------------------------------------------------------------------------------------------ save / load
    def weights_sha256(self) -> str:
        """SHA-256 of the fp32 weights (keys and raw bytes of the state dict, in key order): the ``sha256`` that
        :meth:`save` records. Independent of the device and of where the model came from (a file, a store name or
        memory); a model reloaded from an fp32 file has the same digest, one from an fp16 file (rounded weights) not."""
        return _digest({k: v.detach().cpu() for k, v in self.state_dict().items()})

    def to_payload(self, half: bool = False) -> dict[str, Any]:
        """The checkpoint dict (what :meth:`save` writes): only str/int/tensors, loadable with ``weights_only=True``."""
        sd = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu().clone())
              for k, v in self.state_dict().items()}
        info = {"vlm": self._vlm, "domain": self.domain, "render_settings": self.render_settings,
                "metadata": self.metadata}
        return {"format": FORMAT_TAG, "version": FORMAT_VERSION, "config": self.config.to_json(),
                "info": json.dumps(info, default=str), "dtype": "float16" if half else "float32",
                "state_dict": sd, "sha256": _digest(sd)}

    def save(self, path: str | os.PathLike[str], half: bool = False) -> Path:
        """Write the model to one file atomically (``half=True``: fp16 weights, half the size). Returns the path."""
        path = Path(path)
        payload = self.to_payload(half)
        with atomic_write(path, "wb") as f:
            torch.save(payload, f)
        return path

    @classmethod
    def from_payload(cls, payload: Any, source: str = "<memory>", map_location: Any = "cpu") -> MFWM:
        """Rebuild a model from :meth:`to_payload`'s dict; raises CheckpointError naming ``source`` on any problem."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
            raise CheckpointError(f"{source}: not a genrl-gym MFWM checkpoint (no {FORMAT_TAG!r} format tag); "
                                  "pass a file written by MFWM.save or `genrl train-mfwm`")
        if int(payload.get("version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{source}: checkpoint format version {payload['version']} is newer than this genrl-gym "
                                  f"reads ({FORMAT_VERSION}); upgrade genrl-gym")
        try:
            config = MFWMConfig.from_dict(json.loads(payload["config"]))
            info = json.loads(payload["info"])
            sd = payload["state_dict"]
            if _digest(sd) != payload["sha256"]:
                raise ValueError("weights do not match their recorded SHA-256")
            model = cls(config, domain=info["domain"], vlm_identity=info["vlm"], render_settings=info["render_settings"],
                        metadata=info["metadata"])
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{source}: corrupt MFWM checkpoint ({type(e).__name__}: {e}); re-download it or "
                                  "retrain it with `genrl train-mfwm`") from e
        return model.to(map_location) if map_location is not None else model

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: Any = "cpu", *, expect_domain: str | None = None,
             expect_vlm: Any = None) -> MFWM:
        """Load a checkpoint written by :meth:`save` (fp32 weights whatever was stored).

        ``expect_domain`` / ``expect_vlm`` (a VLM, VLMIdentity or dict) make a mismatch a CheckpointError that names both.
        Missing file -> :class:`CheckpointNotFoundError`; truncated/corrupt/foreign file -> CheckpointError.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointNotFoundError(f"{path}: no such MFWM checkpoint; check the path, or train one with "
                                          "`genrl train-mfwm` (see README)")
        payload = read_torch_file(path, "MFWM")
        model = cls.from_payload(payload, str(path), map_location)
        if expect_domain is not None and model.domain != expect_domain:
            raise CheckpointError(f"{path}: this model was trained on domain {model.domain!r} but domain {expect_domain!r} "
                                  f"was asked for; use a {expect_domain} model")
        want = identity_dict(expect_vlm)
        if want is not None and want != model._vlm:
            raise CheckpointError(f"{path}: this model was trained with VLM {identity_str(model._vlm)} but "
                                  f"{identity_str(want)} was given; embeddings of different VLMs are not interchangeable: "
                                  "use the model's VLM or retrain the connector/aligner on embeddings of yours")
        return model


def read_torch_file(path: Path, what: str, fix: str = "re-download it or retrain it") -> Any:
    """``torch.load(weights_only=True)`` with our errors: truncated/corrupt vs foreign file.

    :param path: the file. :param what: what it should be (for messages). :param fix: what to do about a damaged one.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
    if len(magic) < 4 and b"PK\x03\x04".startswith(magic):  # empty, or cut inside the zip signature
        raise CheckpointError(f"{path}: truncated {what} checkpoint ({os.path.getsize(path)} bytes); {fix}")
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not a genrl-gym {what} checkpoint (not a torch zip file); pass a file written by "
                              "genrl-gym")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:  # a zip whose central directory (at the end) is missing: cut short
        raise CheckpointError(f"{path}: truncated or corrupt {what} checkpoint ({type(e).__name__}: {e}); {fix}") from e
    if not any(n.endswith("data.pkl") for n in names):
        raise CheckpointError(f"{path}: not a genrl-gym {what} checkpoint (a zip file but not a torch archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).split("\n")[0]
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "pickle" in type(e).__name__.lower():
            raise CheckpointError(f"{path}: not a genrl-gym {what} checkpoint (it pickles Python objects: {msg}); note that "
                                  "the original GenRL .pt files pickle whole agents and cannot be loaded") from e
        raise CheckpointError(f"{path}: truncated or corrupt {what} checkpoint ({type(e).__name__}: {msg}); {fix}") from e
