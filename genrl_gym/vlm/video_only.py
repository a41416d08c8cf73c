"""The offline default VLM: a deterministic pixel + motion random-projection video embedder with NO language.

No package on our registries ships pretrained CLIP-family weights, so the default embedder is built from the pixels
alone. It exists so that GenRL's pipeline (embed windows -> connector -> video-prompt targets) runs anywhere; it has
no language semantics, so text prompts are refused (use a video prompt, or an open_clip model with real weights), unless
the model has a text grounding (:mod:`genrl_gym.vlm.grounding`: paraphrases of the behaviours in its data).

Recipe ``pixel-motion-rp-512`` for one window ``uint8 [T, H, W, 3]``:

1. Frames are resized to 64x64 (bilinear, antialiased) if they are not 64x64, scaled to [0, 1], and the window is
   resampled to 8 frames (nearest index on an even grid) if T != 8.
2. Appearance block: the 8 frames average-pooled (4x4) to 16x16 RGB, each frame's per-channel spatial mean
   subtracted (a global brightness/colour shift is not a different behaviour); 8*16*16*3 = 6144 values.
3. Motion block: the 16x16 luma (BT.601) of the frames, its 7 consecutive differences (signed, so the direction of
   motion is kept), 7*16*16 = 1792 values, plus one constant "stillness" coordinate tau = 0.5. After normalisation a
   still window's motion block is the pure stillness direction (two still windows agree), and for a moving window the
   stillness share tau/sqrt(|diff|^2 + tau^2) falls with the amount of motion, so speed is encoded, not only the
   pattern (walker windows: |diff| ~ 0.02 lying still, ~2 moving). 32x32 differences were measured to discriminate
   no better on walker windows and cost 1.7x the projection.
4. Flow block: Lucas-Kanade optical flow (u, v), in 16x16-grid pixels per frame, of each of the 7 frame pairs,
   solved over the whole frame and over each 2x2 quadrant (least squares of the brightness-constancy equation on
   the 16x16 luma, Tikhonov 1e-3, clamped to +-4), 7*5*2 = 70 values, plus a stillness coordinate tau = 0.5. The
   difference block is tied to where things move; the flow says which way and how fast, tolerant to where (on the
   walker, the floor's scroll under the tracking camera is the walking speed).
5. Each block is L2-normalised and weighted 1/sqrt(3), so that before projection
   ``cos(a, b) = (cos_appearance + cos_difference + cos_flow) / 3`` (never a zero vector: the stillness coordinates).
6. A fixed Gaussian random projection (numpy ``RandomState(seed)``, whose stream NumPy keeps stable, scaled by
   1/sqrt(512)) maps the 8008 values to 512 (Johnson-Lindenstrauss: inner products, hence cosine similarities, of the
   feature vectors are preserved up to a small distortion), then L2 normalisation.

Measured on dm_control walker windows (report in the vlm benchmark / tests): nearest neighbours in this space are
windows of the same motion, and cosine similarity correlates with the similarity of the underlying joint
position+velocity trajectories (Spearman ~0.6, against ~0.03 for raw-pixel cosine).

The identity's ``weights`` is ``"seed<seed>-<fingerprint>"`` where the fingerprint hashes the recipe parameters and
the projection matrix itself, so embeddings are never mixed with ones from a different recipe or matrix.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from genrl_gym.utils import VLMError
from genrl_gym.vlm.base import DEFAULT_WINDOW, VLMIdentity, as_video_batch

__all__ = ["VideoOnlyVLM", "TEXT_REFUSAL", "MODEL_NAME"]

MODEL_NAME = "pixel-motion-rp-512"
BACKEND = "video-only"

TEXT_REFUSAL = (
    "the offline default VLM 'video-only' has no language weights, so text prompts cannot be embedded; use a video prompt "
    "(genrl_gym.prompts.example(...)) or build a text-capable model with real open_clip weights: "
    "`genrl pipeline --domain walker --vlm open_clip:ViT-B-32:/path/to/open_clip_weights.bin` "
    "(or a pretrained tag present in the local hub cache)"
)

_SIZE = 64  # every input is resized to 64x64 first
_GRID = 16  # appearance and motion resolution (4x4 average pooling of the 64x64 frames)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights
_TAU = 0.5  # stillness coordinate of the difference and flow blocks (walker |diff|: ~0.02 still, ~2 moving)
_FLOW_REG = 1e-3  # Tikhonov term of the Lucas-Kanade normal equations
_FLOW_MAX = 4.0  # |u|, |v| clamp (16x16-grid pixels per frame; LK is only meaningful for small shifts)


def _feature_dim(window: int) -> int:
    # appearance + (differences + stillness) + (flow of 1 + 4 regions + stillness)
    return window * _GRID * _GRID * 3 + (window - 1) * _GRID * _GRID + 1 + (window - 1) * 5 * 2 + 1


@functools.lru_cache(maxsize=4)
def _projection(seed: int, in_dim: int, out_dim: int) -> tuple[torch.Tensor, str]:
    """Gaussian JL matrix float32 ``[in_dim, out_dim]`` (N(0, 1/out_dim) entries) and its sha256 fingerprint."""
    # RandomState (not Generator): NumPy guarantees its stream stays the same across versions (NEP 19).
    mat = np.random.RandomState(seed).standard_normal((in_dim, out_dim)).astype(np.float32)
    mat *= np.float32(1.0 / np.sqrt(out_dim))
    recipe = (f"{MODEL_NAME}|size={_SIZE}|grid={_GRID}|luma={_LUMA}|tau={_TAU}|flow=lk-1+2x2-reg{_FLOW_REG}-max{_FLOW_MAX}"
              f"|blocks=3|in={in_dim}|out={out_dim}")
    digest = hashlib.sha256(recipe.encode() + mat.tobytes()).hexdigest()[:12]
    return torch.from_numpy(mat), digest


class VideoOnlyVLM:
    """Deterministic video-only embedder (see the module docstring for the recipe). ``has_language`` is False.

    :param seed: seed of the random projection (recorded in the identity).
    :param embed_dim: D (512 by default, GenRL's embedding size).
    :param device: torch device for the computation; outputs are float32 CPU tensors.
    :param batch_size: windows per internal chunk (bounds memory: ~0.4 MB of float32 per window).
    """

    window: int = DEFAULT_WINDOW
    has_language: bool = False

    def __init__(self, *, seed: int = 0, embed_dim: int = 512, device: str | torch.device = "cpu",
                 batch_size: int = 256) -> None:
        if embed_dim <= 0 or batch_size <= 0:
            raise VLMError(f"embed_dim and batch_size must be positive, got {embed_dim}, {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        proj, digest = _projection(self.seed, _feature_dim(self.window), int(embed_dim))
        self._proj = proj.to(self.device)
        n_app = self.window * _GRID * _GRID * 3
        n_diff = (self.window - 1) * _GRID * _GRID + 1
        # row blocks of P for the appearance, difference(+stillness) and flow(+stillness) features
        self._proj_blocks = (self._proj[:n_app], self._proj[n_app:n_app + n_diff], self._proj[n_app + n_diff:])
        self._luma = torch.tensor(_LUMA, dtype=torch.float32, device=self.device)
        model = MODEL_NAME if embed_dim == 512 else f"pixel-motion-rp-{embed_dim}"
        self.identity = VLMIdentity(BACKEND, model, f"seed{self.seed}-{digest}", int(embed_dim))

    @classmethod
    def from_spec(cls, model: str | None, weights: str | None, *, device: str | torch.device = "cpu",
                  seed: int = 0, batch_size: int = 256) -> VideoOnlyVLM:
        """Build from a ``load_vlm`` spec: ``model`` must be None or ``pixel-motion-rp-<D>``; ``weights`` None or the
        identity's ``seed<s>-<fingerprint>`` (then checked, so a recorded identity can be reloaded and verified)."""
        embed_dim = 512
        if model is not None:
            prefix = "pixel-motion-rp-"
            if not model.startswith(prefix) or not model[len(prefix):].isdigit():
                raise VLMError(f"unknown video-only model {model!r}; the video-only backend has one recipe, "
                               f"'{MODEL_NAME}' (or 'pixel-motion-rp-<D>' for another embedding size)")
            embed_dim = int(model[len(prefix):])
        if weights is not None:
            head = weights.split("-", 1)[0]
            if not head.startswith("seed") or not head[4:].isdigit():
                raise VLMError(f"video-only weights must look like 'seed<int>-<fingerprint>', got {weights!r}")
            seed = int(head[4:])
        vlm = cls(seed=seed, embed_dim=embed_dim, device=device, batch_size=batch_size)
        if weights is not None and "-" in weights and weights != vlm.identity.weights:
            raise VLMError(f"video-only weights {weights!r} do not match this installation's {vlm.identity.weights!r} "
                           "(the recipe or the projection matrix differs), so its embeddings would not be comparable")
        return vlm

    @property
    def embed_dim(self) -> int:
        """D, the embedding size."""
        return self.identity.embed_dim

    def __repr__(self) -> str:
        return f"VideoOnlyVLM({self.identity}, device={self.device})"

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Always raises :class:`VLMError`: this embedder has no language weights."""
        raise VLMError(TEXT_REFUSAL)

    @torch.no_grad()
    def embed_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Embed windows ``uint8 [N, T, H, W, 3]`` -> float32 ``[N, D]`` unit-norm (CPU). Any H, W, T >= 1."""
        x = as_video_batch(frames)
        n, t = x.shape[:2]
        if t != self.window:  # resample in time on an even grid (a 1-frame input is repeated: no motion)
            idx = torch.from_numpy(np.rint(np.linspace(0, t - 1, self.window)).astype(np.int64))
            x = x[:, idx]
        out = []
        for i in range(0, n, self.batch_size):
            chunk = x[i:i + self.batch_size]
            app, luma = self._frame_features(chunk.reshape(-1, *chunk.shape[2:]))  # [m*8, ...]
            m = chunk.shape[0]
            out.append(self._window_embed(app.view(m, self.window, -1), luma.view(m, self.window, -1)))
        return torch.cat(out).cpu()

    @torch.no_grad()
    def embed_sliding(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Embed every window of ``window`` consecutive frames of one clip ``uint8 [L, H, W, 3]`` -> ``[L - 7, D]``.

        Row i is the embedding of frames ``i .. i+7``; the result equals ``embed_video(windows)`` on the stride-1
        windows (up to float rounding) but computes the per-frame features once instead of 8 times.
        """
        if not isinstance(frames, (np.ndarray, torch.Tensor)) or frames.ndim != 4:
            raise VLMError(f"embed_sliding takes one clip uint8 [L, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        x = as_video_batch(frames[None])[0]
        num = x.shape[0] - self.window + 1
        if num <= 0:
            raise VLMError(f"embed_sliding needs at least {self.window} frames, got {x.shape[0]}")
        app, luma = self._frame_features(x)  # [L, 768], [L, 256]
        out = []
        for i in range(0, num, self.batch_size):
            j = min(num, i + self.batch_size)
            # Overlapping windows over the small per-frame features (unfold is a view; the copy happens in cat below).
            a = app[i:j + self.window - 1].unfold(0, self.window, 1).transpose(1, 2)  # [m, 8, 768]
            lu = luma[i:j + self.window - 1].unfold(0, self.window, 1).transpose(1, 2)  # [m, 8, 256]
            out.append(self._window_embed(a, lu))
        return torch.cat(out).cpu()

    def _frame_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``uint8 [M, H, W, 3]`` -> (centred 16x16 RGB ``[M, 768]``, 16x16 luma ``[M, 256]``), float32 in [0, 1]."""
        m, h, w, _ = x.shape
        x = x.to(self.device, non_blocking=True)
        if (h, w) != (_SIZE, _SIZE):
            y = x.permute(0, 3, 1, 2).float()
            y = torch.nn.functional.interpolate(y, size=(_SIZE, _SIZE), mode="bilinear", antialias=True, align_corners=False)
            x = y.permute(0, 2, 3, 1).contiguous()  # float in [0, 255]
        x16 = _pool4(x).float().mul_(1.0 / (16 * 255))  # [M, 16, 16, 3] in [0, 1]
        luma = x16 @ self._luma  # [M, 16, 16]
        app = x16 - x16.mean(dim=(1, 2), keepdim=True)
        return app.reshape(m, -1), luma.reshape(m, -1)

    def _window_embed(self, app: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
        """Per-frame features of n windows (``[n, 8, 768]``, ``[n, 8, 256]``) -> float32 ``[n, D]`` unit-norm.

        Computes ``normalise(concat(blocks) @ P)`` as a sum of per-block products (no concatenated copy): each block's
        1/(sqrt(3) |block|) is a per-row scalar, and the stillness coordinates contribute tau * (their row of P).
        """
        n = app.shape[0]
        app = app.reshape(n, -1)  # [n, 8*768]
        diff = (luma[:, 1:] - luma[:, :-1]).reshape(n, -1)  # [n, 7*256] signed frame differences
        flow = _lk_flow(luma.reshape(n, self.window, _GRID, _GRID))  # [n, 7*5*2]
        p_app, p_diff, p_flow = self._proj_blocks
        tau2 = _TAU * _TAU
        emb = (app @ p_app).mul_(1.0 / app.norm(dim=1, keepdim=True).clamp_min(1e-8))
        emb += (diff @ p_diff[:-1] + _TAU * p_diff[-1]).mul_((diff.square().sum(1, keepdim=True) + tau2).rsqrt())
        emb += (flow @ p_flow[:-1] + _TAU * p_flow[-1]).mul_((flow.square().sum(1, keepdim=True) + tau2).rsqrt())
        # the common 1/sqrt(3) block weight cancels in the final normalisation
        return emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _lk_flow(luma: torch.Tensor) -> torch.Tensor:
    """Lucas-Kanade flow of consecutive frames, whole frame + 2x2 quadrants: ``[n, T, G, G]`` -> ``[n, (T-1)*5*2]``.

    Least squares of ``Ix u + Iy v + It = 0`` over each region (central-difference gradients averaged over the pair),
    ``(u, v)`` in grid pixels per frame, clamped to ``+-_FLOW_MAX``.
    """
    n, t, g, _ = luma.shape
    gx = torch.zeros_like(luma)
    gy = torch.zeros_like(luma)
    gx[..., 1:-1] = (luma[..., 2:] - luma[..., :-2]) * 0.5
    gy[..., 1:-1, :] = (luma[..., 2:, :] - luma[..., :-2, :]) * 0.5
    ix, iy, it = (gx[:, 1:] + gx[:, :-1]) * 0.5, (gy[:, 1:] + gy[:, :-1]) * 0.5, luma[:, 1:] - luma[:, :-1]
    h = g // 2

    def region_sums(a: torch.Tensor) -> torch.Tensor:  # [n, T-1, G, G] -> [n, T-1, 5] (quadrants, then whole)
        q = a.reshape(n, t - 1, 2, h, 2, h).sum(dim=(3, 5)).reshape(n, t - 1, 4)
        return torch.cat([q, q.sum(dim=2, keepdim=True)], dim=2)

    a, b, d = region_sums(ix * ix) + _FLOW_REG, region_sums(ix * iy), region_sums(iy * iy) + _FLOW_REG
    e, f = -region_sums(ix * it), -region_sums(iy * it)
    det = a * d - b * b  # > 0: a, d > 0 and Cauchy-Schwarz
    u = ((d * e - b * f) / det).clamp_(-_FLOW_MAX, _FLOW_MAX)
    v = ((a * f - b * e) / det).clamp_(-_FLOW_MAX, _FLOW_MAX)
    return torch.stack([u, v], dim=-1).reshape(n, -1)


def _pool4(x: torch.Tensor) -> torch.Tensor:
    """Sum-pool 4x4 blocks of ``[M, 64, 64, 3]`` frames -> ``[M, 16, 16, 3]`` (int16 sums for uint8 input, else float).

    Slice additions on channels-last views: cheaper on CPU than ``avg_pool2d`` (which needs a permute and
    a float copy of the full-resolution frames) and exact for uint8 (16 * 255 fits in int16).
    """
    m = x.shape[0]
    y = x.view(m * 16, 4, _SIZE * 3)
    y = y[:, 0].to(torch.int16 if x.dtype == torch.uint8 else x.dtype) + y[:, 1] + y[:, 2] + y[:, 3]  # [M*16, 192]
    y = y.view(m * 16, 16, 4, 3)
    return (y[:, :, 0] + y[:, :, 1] + y[:, :, 2] + y[:, :, 3]).view(m, 16, 16, 3)
