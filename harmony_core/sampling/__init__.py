"""Flow-matching schedules, k-diffusion-signature samplers, SyncCFG guidance and generation."""

from .anchors import AnchorSource, VAEAnchors
from .guidance import GuidanceConfig, GuidedDenoiser, cfg, combine, sync_cfg
from .layout import MODES, AVLayout, StreamMask, mode_mask
from .pipeline import GenerationRequest, generate_latents
from .samplers import SAMPLERS, get_sampler, sample_euler, sample_heun, sample_unipc
from .schedules import DEFAULT_SHIFT, DEFAULT_STEPS, flow_sigmas, shift_sigma

__all__ = [
    "AnchorSource",
    "VAEAnchors",
    "GuidanceConfig",
    "GuidedDenoiser",
    "cfg",
    "combine",
    "sync_cfg",
    "MODES",
    "AVLayout",
    "StreamMask",
    "mode_mask",
    "GenerationRequest",
    "generate_latents",
    "SAMPLERS",
    "get_sampler",
    "sample_euler",
    "sample_heun",
    "sample_unipc",
    "DEFAULT_SHIFT",
    "DEFAULT_STEPS",
    "flow_sigmas",
    "shift_sigma",
]
