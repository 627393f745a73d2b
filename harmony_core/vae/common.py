"""Pieces shared by the small video and audio VAEs: the latent-normalising base class, layers,
the Gaussian posterior, and safetensors save / load with a strict key check.

Both VAEs present the same interface: ``encode(x, *, generator=None, sample=False)`` returns
*normalised* latents (per-channel ``(z - latent_mean) / latent_std``, so the diffusion model sees
roughly zero-mean unit-variance inputs) and ``decode(latent)`` undoes the normalisation first.
``posterior`` / ``decode_raw`` work on raw (unnormalised) latents and are what training uses.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "LatentVAE",
    "ChannelRMSNorm",
    "gaussian_kl",
    "save_vae",
    "load_vae",
    "FORMAT_VERSION",
]

FORMAT_VERSION = "1"
_LOGVAR_RANGE = (-30.0, 20.0)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class ChannelRMSNorm(nn.Module):
    """RMS norm over the channel axis (dim 1) with a learned per-channel gain.

    Normalising each position on its own (instead of GroupNorm statistics over time and space)
    keeps the causal video VAE causal and makes outputs independent of clip length.

    Args:
        channels: size of dim 1.
        eps: added to the mean square.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, ...]`` → same shape."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps) * self.weight.view(shape)


# Initial posterior log-variance: a small std (e^-3 ~ 0.05) so the decoder is not drowned in
# sampling noise before the encoder has learned a latent scale; the KL term then sets the noise level.
INITIAL_LOGVAR = -6.0


def init_posterior_logvar_(conv: nn.Module, latent_channels: int) -> None:
    """Set the log-variance half of an encoder's output bias to ``INITIAL_LOGVAR``."""
    with torch.no_grad():
        conv.bias[latent_channels:].fill_(INITIAL_LOGVAR)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, 1)) per element, averaged over every element (a scalar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------


class LatentVAE(nn.Module):
    """Base for the small VAEs: latent normalisation buffers and the public encode / decode.

    Subclasses set ``KIND`` and ``latent_dims`` and implement ``posterior`` (input → raw mean and
    log-variance) and ``decode_raw`` (raw latent → output), plus ``_config_dict``.

    Args:
        latent_channels: channel count C of the latent.
    """

    KIND = ""
    latent_dims = 0  # rank of a batched latent: 5 for [B, C, T_v, H, W], 3 for [B, C, T_a]

    def __init__(self, latent_channels: int) -> None:
        super().__init__()
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    @property
    def latent_channels(self) -> int:
        """Channels C of the latent."""
        return int(self.latent_mean.shape[0])

    # --- to be provided by subclasses ------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _config_dict(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    # --- normalisation ---------------------------------------------------------------------------
    def _stat_view(self, t: torch.Tensor) -> torch.Tensor:
        return t.view((1, -1) + (1,) * (self.latent_dims - 2))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent → normalised latent, ``(z - latent_mean) / latent_std`` per channel."""
        return (z - self._stat_view(self.latent_mean)) / self._stat_view(self.latent_std)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent → raw latent (inverse of :meth:`normalize`)."""
        return latent * self._stat_view(self.latent_std) + self._stat_view(self.latent_mean)

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics of raw posterior means (``[C]`` each, std > 0)."""
        c = self.latent_channels
        if mean.shape != (c,) or std.shape != (c,):
            raise ValueError(f"latent stats must be [{c}] each, got {tuple(mean.shape)=} and {tuple(std.shape)=}.")
        if not torch.all(std > 0) or not torch.isfinite(mean).all():
            raise ValueError(f"latent stats must be finite with std > 0; got std min {float(std.min()):.3g}.")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    # --- public API ------------------------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, sample: bool = False
    ) -> torch.Tensor:
        """Encode to normalised latents.

        Args:
            x: the modality's input (see the subclass docstring for its layout).
            generator: required when ``sample=True``; draws the posterior noise.
            sample: ``False`` returns the posterior mean (deterministic); ``True`` draws
                ``mean + std * eps`` with ``eps`` from ``generator``.

        Returns:
            Normalised latent (``[B, C, T_v, H, W]`` or ``[B, C, T_a]``).
        """
        if sample and generator is None:
            raise ValueError(
                "encode(sample=True) needs an explicit torch.Generator: "
                "pass generator=torch.Generator().manual_seed(seed)."
            )
        mean, logvar = self.posterior(x)
        return self.normalize(self.draw(mean, logvar, generator) if sample else mean)

    @staticmethod
    def draw(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Posterior sample ``mean + exp(logvar / 2) * eps`` with ``eps`` from ``generator`` (same layout as mean)."""
        eps = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * eps.to(mean.device)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode normalised latents (the output of :meth:`encode`) back to the modality."""
        if not isinstance(latent, torch.Tensor) or latent.dim() != self.latent_dims:
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(f"{self.KIND} latent has shape {shape}: expected {self.latent_dims} dims (batched).")
        if latent.shape[1] != self.latent_channels:
            raise ValueError(
                f"{self.KIND} latent has {latent.shape[1]} channels ({tuple(latent.shape)=}); this VAE uses "
                f"{self.latent_channels}. Use the VAE that produced the latent."
            )
        return self.decode_raw(self.denormalize(latent))

    def split_moments(self, moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2C, ...]`` network output → (mean, clamped log-variance), ``[B, C, ...]`` each."""
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(*_LOGVAR_RANGE)


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------


def _registry() -> dict[str, Any]:
    # Imported lazily: video.py and audio.py import this module for their base class.
    from .audio import AudioVAE, AudioVAEConfig
    from .video import VideoVAE, VideoVAEConfig

    return {VideoVAE.KIND: (VideoVAE, VideoVAEConfig), AudioVAE.KIND: (AudioVAE, AudioVAEConfig)}


def save_vae(path: str | os.PathLike[str], vae: LatentVAE) -> None:
    """Write a VAE to a safetensors file atomically (temp file in the same folder + ``os.replace``).

    The metadata holds ``kind`` (``"video_vae"`` / ``"audio_vae"``), ``config`` (JSON of the
    config dataclass) and ``format_version``.

    Args:
        path: destination ``.safetensors`` file.
        vae: a :class:`VideoVAE` or :class:`AudioVAE`.
    """
    from ..io.checkpoints import atomic_save_file

    if not isinstance(vae, LatentVAE) or not vae.KIND:
        raise TypeError(f"save_vae expects a VideoVAE or AudioVAE, got {type(vae).__name__}.")
    config_json = json.dumps(vae._config_dict(), sort_keys=True)
    meta = {"kind": vae.KIND, "config": config_json, "format_version": FORMAT_VERSION}
    atomic_save_file(dict(vae.state_dict()), path, meta)
    log.info("saved %s to %s", vae.KIND, os.fspath(path))


def load_vae(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LatentVAE:
    """Load a VAE written by :func:`save_vae`, rebuilding it from the stored config.

    Loading is strict: any missing, unexpected or mis-shaped key raises a ``ValueError`` listing
    them all.

    Args:
        path: a ``.safetensors`` file written by :func:`save_vae`.
        device: where to put the weights.

    Returns:
        The :class:`VideoVAE` or :class:`AudioVAE`, in eval mode.
    """
    from ..io.checkpoints import load_state_strict, load_tensors, read_metadata

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"VAE file {path!r} does not exist. Train one with harmony_core.vae.train or fix the path.")
    meta = read_metadata(path)
    registry = _registry()
    kind = meta.get("kind")
    if kind not in registry or "config" not in meta:
        raise ValueError(
            f"{path!r} is not a harmony_core VAE file: metadata kind={kind!r} (expected one of {sorted(registry)}) "
            f"and config {'present' if 'config' in meta else 'missing'}. Save it with harmony_core.vae.save_vae."
        )
    model_cls, config_cls = registry[kind]
    vae = model_cls(config_cls.from_dict(json.loads(meta["config"])))
    load_state_strict(vae, load_tensors(path), source=path)
    return vae.to(device).eval()
