"""A small causal video VAE with the Wan2.2 time geometry (the project's embedded default).

Geometry: pixel clips ``[B, 3, T, H, W]`` in [-1, 1] with ``T = 1 + s*k`` (``s = time_stride``,
4 by default) become latents ``[B, C, 1 + k, H/8, W/8]``. Latent frame 0 encodes pixel frame 0
alone; latent frame ``i >= 1`` encodes pixel frames ``s*i - s + 1 .. s*i`` (the spans of
``TimelineConfig.video_frame_span``).

Design (how causality and the lone first frame are obtained):

1. *Time folding.* The clip is front-padded with ``s - 1`` copies of frame 0, giving ``s*(k+1)``
   frames, which are cut into ``k + 1`` groups of ``s`` consecutive frames. Group 0 is frame 0
   repeated, so it sees nothing else; group ``i`` is exactly latent ``i``'s span. Each group and
   each 2×2 pixel block are folded into channels (``3 * s * 4 = 48`` channels at H/2 × W/2),
   the same "patchify first" trick Wan2.2's VAE uses, which keeps the CPU cost low
   (``patch_size`` sets the block size; 2 by default).
2. *Per-group 2-D stages.* Residual 2-D conv stages with stride-2 downsampling take H/2 to H/8;
   they mix nothing across groups.
3. *Causal temporal stage.* At H/8, residual blocks of causal 3-D convs (kernel ``temporal_kernel``
   in time, left-padded by replicating the first latent frame) mix information from earlier
   groups only. Norms are per-position channel RMS norms, never statistics over time.

Hence latent ``i`` depends only on pixel frames ``<= s*i``. The decoder mirrors the encoder
(causal 3-D stage, 2-D upsampling per group, unfold ``s`` frames per group) and drops the first
``s - 1`` output frames, so output frame ``t`` depends only on latents ``<= ceil(t / s)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .common import ChannelRMSNorm, LatentVAE, init_posterior_logvar_

__all__ = ["VideoVAEConfig", "VideoVAE", "CausalConv3d"]

@dataclass(frozen=True)
class VideoVAEConfig:
    """Architecture of :class:`VideoVAE`.

    Attributes:
        latent_channels: C of the latent ``[B, C, T_v, H, W]``.
        patch_size: pixel-unshuffle factor applied to each time group before the first conv.
        channels: widths of the resolution levels H/p, H/(2p), ...; the spatial stride is
            ``patch_size * 2 ** (len(channels) - 1)`` (2 * 4 = 8 by default).
        num_res_blocks: residual blocks per level (encoder and decoder each).
        time_stride: pixel frames per latent frame after the first (Wan2.2: 4).
        temporal_kernel: time extent of the causal convs at the lowest resolution.
        subframe_channels: width of the decoder's last, per-frame stage (0 = none: the last conv
            emits all ``time_stride`` frames of a group from shared features, the original design,
            kept so files written before this option load unchanged).
    """

    latent_channels: int = 12
    patch_size: int = 2
    channels: tuple[int, ...] = (32, 64, 128)
    num_res_blocks: int = 1
    time_stride: int = 4
    temporal_kernel: int = 2
    subframe_channels: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

        def bad(name: str, expected: str, fix: str) -> None:
            raise ValueError(f"VideoVAEConfig.{name}={getattr(self, name)!r} is invalid: expected {expected}. {fix}")

        for name in ("latent_channels", "patch_size", "time_stride", "temporal_kernel", "num_res_blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                bad(name, "an int >= 1", "Use the defaults (12, 2, 4, 2, 1).")
        if not isinstance(self.subframe_channels, int) or self.subframe_channels < 0:
            bad("subframe_channels", "an int >= 0", "Use 16 (or 0 for the group-wise decoder).")
        if len(self.channels) < 1 or any(c < 8 for c in self.channels):
            bad("channels", "one or more widths >= 8", "Use (32, 64, 128) for a spatial stride of 8 with patch_size=2.")

    @property
    def spatial_stride(self) -> int:
        """Pixels per latent cell along H and W (``patch_size * 2 ** (len(channels) - 1)``)."""
        return self.patch_size * 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoVAEConfig:
        """Rebuild from :meth:`to_dict` output (e.g. checkpoint metadata)."""
        # Files written before the per-frame decoder stage existed decode group-wise.
        d = {"subframe_channels": 0, **d}
        try:
            return cls(**d)
        except TypeError as e:
            raise ValueError(f"stored VideoVAEConfig does not match this version of harmony_core: {e}") from e


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class CausalConv3d(nn.Module):
    """3-D conv that is causal in time: output frame t sees input frames t-k+1 .. t.

    The time axis is left-padded with ``kernel_t - 1`` copies of frame 0 (so frame 0 only ever
    sees itself); H and W are zero-padded to keep their size. Computed as a 2-D conv over the
    ``kernel_t`` time-shifted copies stacked along channels, which uses the fast CPU conv path
    (PyTorch's CPU Conv3d falls back to a slow kernel). Weight layout: ``conv.weight`` is
    ``[C_out, kernel_t * C_in, k, k]`` with the oldest frame first.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_t: kernel extent in time.
        kernel_s: kernel extent in H and W (odd).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_t: int, kernel_s: int = 3) -> None:
        super().__init__()
        self.kernel_t = kernel_t
        self.conv = nn.Conv2d(kernel_t * in_channels, out_channels, kernel_s, padding=kernel_s // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` → ``[B, C_out, T, H, W]``."""
        b, t, k = x.shape[0], x.shape[2], self.kernel_t
        if k > 1:
            x = torch.cat([x[:, :, :1].expand(-1, -1, k - 1, -1, -1), x], dim=2)  # [B, C, T+k-1, H, W]
            x = torch.cat([x[:, :, i : i + t] for i in range(k)], dim=1)  # [B, k*C, T, H, W], oldest first
        y = self.conv(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class _ResBlock(nn.Module):
    # norm → SiLU → conv → norm → SiLU → conv, plus a 1×1 skip when the width changes (2-D only).
    def __init__(self, cin: int, cout: int, kernel_t: int | None) -> None:
        super().__init__()

        def conv(a: int, b: int) -> nn.Module:
            return nn.Conv2d(a, b, 3, padding=1) if kernel_t is None else CausalConv3d(a, b, kernel_t)

        self.norm1, self.conv1 = ChannelRMSNorm(cin), conv(cin, cout)
        self.norm2, self.conv2 = ChannelRMSNorm(cout), conv(cout, cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        # Zero-init the residual branch: every block starts as (a projection of) the identity,
        # which measurably shortens the early "flat background" plateau on the synthetic world.
        last = self.conv2.conv if isinstance(self.conv2, CausalConv3d) else self.conv2
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _Encoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        ch, s = cfg.channels, cfg.time_stride
        self.conv_in = nn.Conv2d(3 * s * cfg.patch_size**2, ch[0], 3, padding=1)
        self.levels = nn.ModuleList()
        for i in range(len(ch) - 1):
            level = nn.Module()
            level.blocks = nn.Sequential(*[_ResBlock(ch[i], ch[i], None) for _ in range(cfg.num_res_blocks)])
            level.down = nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1)
            self.levels.append(level)
        self.mid = nn.Sequential(*[_ResBlock(ch[-1], ch[-1], cfg.temporal_kernel) for _ in range(cfg.num_res_blocks)])
        self.norm_out = ChannelRMSNorm(ch[-1])
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, cfg.temporal_kernel)
        self.time_stride, self.patch = s, cfg.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, T, H, W] with T = 1 + s*k
        b, s, p = x.shape[0], self.time_stride, self.patch
        x = torch.cat([x[:, :, :1].expand(-1, -1, s - 1, -1, -1), x], dim=2)  # [B, 3, s*(k+1), H, W]
        x = rearrange(x, "b c (t s) (h p) (w q) -> (b t) (s c p q) h w", s=s, p=p, q=p)
        x = self.conv_in(x)  # [B*T_v, ch0, H/2, W/2]
        for level in self.levels:
            x = level.down(level.blocks(x))
        x = rearrange(x, "(b t) c h w -> b c t h w", b=b)  # [B, ch_last, T_v, h, w]
        x = self.mid(x)
        return self.conv_out(F.silu(self.norm_out(x)))  # [B, 2C, T_v, h, w]


class _Decoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        ch, s = cfg.channels, cfg.time_stride
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[-1], cfg.temporal_kernel)
        self.mid = nn.Sequential(*[_ResBlock(ch[-1], ch[-1], cfg.temporal_kernel) for _ in range(cfg.num_res_blocks)])
        self.levels = nn.ModuleList()
        for i in reversed(range(len(ch) - 1)):
            level = nn.Module()
            level.up = nn.Conv2d(ch[i + 1], ch[i], 3, padding=1)  # after nearest ×2
            level.blocks = nn.Sequential(*[_ResBlock(ch[i], ch[i], None) for _ in range(cfg.num_res_blocks)])
            self.levels.append(level)
        self.norm_out = ChannelRMSNorm(ch[0])
        sc = cfg.subframe_channels
        if sc:
            # Per-frame last stage: split each group's features into `s` frames' features, then one
            # residual block and the output conv run on every frame with shared weights. Emitting
            # all s frames from shared features (sc = 0) trains into decoders whose frames inside a
            # group are identical (measured: intra-group std 0.01 vs 0.1 between groups), which
            # quantises every event to 4-frame steps and breaks audio-visual timing.
            self.to_frames = nn.Conv2d(ch[0], s * sc, 3, padding=1)
            self.frame_block = _ResBlock(sc, sc, None)
            self.frame_norm = ChannelRMSNorm(sc)
            self.conv_out = nn.Conv2d(sc, 3 * cfg.patch_size**2, 3, padding=1)
        else:
            self.conv_out = nn.Conv2d(ch[0], 3 * s * cfg.patch_size**2, 3, padding=1)
        self.time_stride, self.patch, self.subframe_channels = s, cfg.patch_size, sc

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: [B, C, T_v, h, w] (raw latent)
        b, s, p = z.shape[0], self.time_stride, self.patch
        x = self.mid(self.conv_in(z))  # [B, ch_last, T_v, h, w]
        x = rearrange(x, "b c t h w -> (b t) c h w")
        for level in self.levels:
            x = level.blocks(level.up(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        if self.subframe_channels:
            x = self.to_frames(F.silu(self.norm_out(x)))  # [B*T_v, s*sc, H/2, W/2]
            x = rearrange(x, "n (s c) h w -> (n s) c h w", s=s)
            x = self.conv_out(F.silu(self.frame_norm(self.frame_block(x))))  # [B*T_v*s, 3*4, H/2, W/2]
            x = rearrange(x, "(b t s) (c p q) h w -> b c (t s) (h p) (w q)", b=b, s=s, p=p, q=p)
        else:
            x = self.conv_out(F.silu(self.norm_out(x)))  # [B*T_v, 3*s*4, H/2, W/2]
            x = rearrange(x, "(b t) (s c p q) h w -> b c (t s) (h p) (w q)", b=b, s=s, p=p, q=p)
        return x[:, :, s - 1 :]  # group 0 stands for frame 0 alone → [B, 3, 1 + s*(T_v-1), H, W]


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class VideoVAE(LatentVAE):
    """Causal video VAE: ``[B, 3, T, H, W]`` in [-1, 1] ↔ normalised latents ``[B, C, T_v, H/8, W/8]``.

    ``T`` must be ``1 + time_stride * k`` and ``H``, ``W`` multiples of ``spatial_stride``;
    ``T_v = 1 + k``. ``encode`` / ``decode`` apply the stored per-channel latent normalisation
    (see :class:`~harmony_core.vae.common.LatentVAE`); ``decode`` clamps pixels to [-1, 1].

    Args:
        config: architecture; ``None`` means the defaults.
    """

    KIND = "video_vae"
    latent_dims = 5

    def __init__(self, config: VideoVAEConfig | None = None) -> None:
        config = config or VideoVAEConfig()
        super().__init__(config.latent_channels)
        self.config = config
        self.encoder = _Encoder(config)
        init_posterior_logvar_(self.encoder.conv_out.conv, config.latent_channels)
        self.decoder = _Decoder(config)

    @property
    def time_stride(self) -> int:
        """Pixel frames per latent frame after the first."""
        return self.config.time_stride

    @property
    def spatial_stride(self) -> int:
        """Pixels per latent cell along H and W."""
        return self.config.spatial_stride

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """``(T_v, H/stride, W/stride)`` for a pixel clip of ``frames × height × width`` (validated)."""
        self._check_geometry(frames, height, width)
        return 1 + (frames - 1) // self.time_stride, height // self.spatial_stride, width // self.spatial_stride

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames decoded from ``latent_frames`` latent frames, ``1 + s * (T_v - 1)``."""
        return 1 + self.time_stride * (latent_frames - 1)

    def _check_geometry(self, frames: int, height: int, width: int) -> None:
        s, p = self.time_stride, self.spatial_stride
        if frames < 1 or (frames - 1) % s:
            k = max(1, round((frames - 1) / s))
            raise ValueError(
                f"video has T={frames} frames: the causal VAE needs T = 1 + {s}*k (e.g. {1 + s * k}). "
                "Trim or pad the clip to that length (TimelineConfig.pixel_frames_for_seconds gives valid counts)."
            )
        if height % p or width % p or height < p or width < p:
            raise ValueError(
                f"video is {height}x{width} (H x W): both must be positive multiples of {p}. "
                f"Resize or crop to e.g. {max(p, height // p * p)}x{max(p, width // p * p)}."
            )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior of a pixel clip.

        Args:
            x: ``[B, 3, T, H, W]`` in [-1, 1] (``[3, T, H, W]`` is treated as B = 1).

        Returns:
            ``(mean, logvar)``, ``[B, C, T_v, H/8, W/8]`` each, unnormalised.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"video must be a torch.Tensor [B, 3, T, H, W], got {type(x).__name__}.")
        if x.dim() == 4:
            x = x[None]
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(
                f"video has shape {tuple(x.shape)}: expected [B, 3, T, H, W] in [-1, 1]. "
                "Convert a ComfyUI IMAGE [T, H, W, 3] in 0..1 with x.permute(3, 0, 1, 2)[None] * 2 - 1."
            )
        if not x.is_floating_point():
            raise TypeError(f"video has dtype {x.dtype}: expected floating point in [-1, 1].")
        self._check_geometry(x.shape[2], x.shape[3], x.shape[4])
        dtype = self.encoder.conv_in.weight.dtype
        return self.split_moments(self.encoder(x.to(dtype)))

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[B, C, T_v, h, w]`` → pixels ``[B, 3, 1 + s*(T_v-1), 8h, 8w]`` clamped to [-1, 1]."""
        return self.decoder(z.to(self.decoder.conv_in.conv.weight.dtype)).clamp(-1.0, 1.0)

    def _config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()
