"""The module that training optimises: the DiT plus the trainable transcript encoder.

Caption embeddings come precomputed from the frozen caption encoder (``latents.py`` stores them in
the latent cache), so no gradient ever reaches the caption encoder and it is not part of this
module. The transcript encoder is trained from scratch with the DiT (paper §3.2.2, Eq. 2), so it is.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import HarmonyConfig
from ..model.conditions import ForwardOptions, HarmonyConditions
from ..model.dit import HarmonyDiT
from ..model.layers import init_linear_
from ..text.transcript import GRN, TranscriptEncoder, TranscriptEncoderConfig

__all__ = ["HarmonyTrainModel", "build_train_model", "init_transcript_encoder_"]


class HarmonyTrainModel(nn.Module):
    """DiT + optional transcript encoder with one flat forward (what DDP / FSDP wrap).

    Args:
        dit: the dual-stream transformer.
        transcript: the transcript encoder, or None (then no speech conditioning is fed); its width
            must equal ``dit.config.speech_dim``.
        options: forward switches used for every training step (e.g. interactions off for audio
            pre-training).
    """

    def __init__(
        self, dit: HarmonyDiT, transcript: TranscriptEncoder | None = None, *, options: ForwardOptions | None = None
    ) -> None:
        super().__init__()
        if transcript is not None and transcript.dim != dit.config.speech_dim:
            raise ValueError(
                f"transcript encoder dim={transcript.dim} differs from the DiT's speech_dim="
                f"{dit.config.speech_dim}. Build the encoder with dim=config.speech_dim."
            )
        self.dit = dit
        self.transcript = transcript
        self.options = options or ForwardOptions()

    @property
    def config(self) -> HarmonyConfig:
        """The DiT's architecture."""
        return self.dit.config

    def forward(
        self,
        v_xt: torch.Tensor,
        a_xt: torch.Tensor,
        v_t: torch.Tensor,
        a_t: torch.Tensor,
        v_context: torch.Tensor,
        a_context: torch.Tensor,
        v_context_mask: torch.Tensor | None = None,
        a_context_mask: torch.Tensor | None = None,
        transcript_ids: torch.Tensor | None = None,
        transcript_mask: torch.Tensor | None = None,
        a_ref: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict both velocities.

        Args:
            v_xt: ``[B, C_v, T_v, H, W]`` noised video latents.
            a_xt: ``[B, C_a, T_a]`` noised audio latents.
            v_t, a_t: ``[B]`` per-stream sigmas (0 = clean conditioning stream).
            v_context: ``[B, L, text_dim]`` frozen caption-encoder tokens for the video prompt.
            a_context: ``[B, L, text_dim]`` tokens of the audio caption.
            v_context_mask, a_context_mask: ``[B, L]`` bool, True = real token.
            transcript_ids, transcript_mask: ``[B, L_s]`` character ids / bool mask from
                ``tokenize_transcript``; ignored when the model has no transcript encoder.
            a_ref: ``[B, C_a, T_r]`` clean reference-audio latent, or None.

        Returns:
            ``(v_vel [B, C_v, T_v, H, W], a_vel [B, C_a, T_a])`` (reference tokens are stripped by the DiT).
        """
        speech = speech_mask = None
        if self.transcript is not None and transcript_ids is not None:
            # An empty transcript is an all-False row; GRN's L2 norm over it is sqrt(0), whose gradient
            # is NaN. Encode such rows from one placeholder character instead and zero their output:
            # the result is the encoder's documented all-zero row, the gradient stays finite, and every
            # parameter is in the graph on every rank (DDP needs that).
            empty = ~transcript_mask.any(dim=1)  # [B]
            safe_mask = transcript_mask.clone()
            safe_mask[:, 0] |= empty
            speech = self.transcript(transcript_ids, safe_mask) * transcript_mask.unsqueeze(-1)
            speech_mask = transcript_mask
        cond = HarmonyConditions(
            v_context=v_context,
            a_context=a_context,
            speech=speech,
            v_context_mask=v_context_mask,
            a_context_mask=a_context_mask,
            speech_mask=speech_mask,
            a_ref=a_ref,
        )
        return self.dit(v_xt, a_xt, v_t, a_t, cond, options=self.options)


@torch.no_grad()
def init_transcript_encoder_(encoder: TranscriptEncoder, generator: torch.Generator) -> None:
    """Seeded initialisation: N(0, 1) character table with a zero ``<pad>`` row (torch's Embedding
    default), Xavier-uniform convs/linears with zero bias, unit LayerNorms, zero GRN (ConvNeXt-V2)."""
    for m in encoder.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, generator=generator)
            if m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
        elif isinstance(m, (nn.Linear, nn.Conv1d)):
            init_linear_(m, generator=generator)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, GRN):
            nn.init.zeros_(m.gamma)
            nn.init.zeros_(m.beta)


def build_train_model(
    config: HarmonyConfig,
    *,
    transcript: TranscriptEncoderConfig | None = None,
    options: ForwardOptions | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> HarmonyTrainModel:
    """A freshly initialised model, every weight drawn from ``torch.Generator().manual_seed(seed)``.

    Args:
        config: the DiT architecture.
        transcript: transcript-encoder shape (its ``dim`` must equal ``config.speech_dim``); None builds
            none. Ignored (with no encoder built) when ``config.speech_dim == 0``.
        options: forward switches for training.
        seed: initialisation seed.
        device: where the weights live.
    """
    g = torch.Generator().manual_seed(seed)
    dit = HarmonyDiT(config, device="meta", init_weights=False)
    dit.to_empty(device="cpu")
    dit.init_weights(generator=g)
    enc = None
    if transcript is not None and config.speech_dim:
        enc = TranscriptEncoder.from_config(transcript, device=torch.device("meta"))
        enc.to_empty(device="cpu")
        init_transcript_encoder_(enc, g)
    model = HarmonyTrainModel(dit, enc, options=options)
    return model.to(device) if device is not None else model


def parameter_count(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad or not trainable_only)
