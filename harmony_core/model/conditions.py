"""Inputs that stay fixed across denoising steps (text, transcript, reference audio) and the
per-call switches of a forward pass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

__all__ = ["HarmonyConditions", "ForwardOptions"]


@dataclass
class HarmonyConditions:
    """Conditioning of one batch.

    Attributes:
        v_context: ``[B, L_v, text_dim]`` video prompt embedding (Wan: umT5 tokens).
        a_context: ``[B, L_c, text_dim]`` audio caption embedding.
        speech: ``[B, L_s, speech_dim]`` transcript-encoder output, or None (no speech).
        v_context_mask, a_context_mask, speech_mask: ``[B, L]`` bool (True = real token) or None
            (attend to every row, as Wan/Ovi do with their zero padding).
        a_ref: ``[B, C_a, T_r]`` clean reference-audio latent (timbre), or None.
    """

    v_context: torch.Tensor
    a_context: torch.Tensor
    speech: torch.Tensor | None = None
    v_context_mask: torch.Tensor | None = None
    a_context_mask: torch.Tensor | None = None
    speech_mask: torch.Tensor | None = None
    a_ref: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.v_context.shape[0])

    def _map(self, fn) -> HarmonyConditions:
        return HarmonyConditions(
            **{
                f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name)))
                for f in dataclasses.fields(self)
            }
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> HarmonyConditions:
        """Move tensors; ``dtype`` applies to float tensors only (masks stay bool)."""

        def mv(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if (dtype is not None and t.is_floating_point()) else None)

        return self._map(mv)

    def repeat(self, n: int) -> HarmonyConditions:
        """Stack ``n`` copies along the batch axis (``[B, ...]`` -> ``[n*B, ...]``)."""
        return self._map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))

    @staticmethod
    def cat(items: list[HarmonyConditions]) -> HarmonyConditions:
        """Concatenate several conditionings along the batch axis (for batched guidance passes).

        Contexts of different lengths are zero-padded to the longest, with masks marking the real
        rows, so a positive and a negative prompt can share one forward pass.
        """
        if len(items) == 1:
            return items[0]
        out = {}
        mask_names = ("v_context_mask", "a_context_mask", "speech_mask")
        for f in dataclasses.fields(HarmonyConditions):
            vals = [getattr(c, f.name) for c in items]
            if f.name in mask_names:
                out[f.name] = None if all(v is None for v in vals) else vals
                continue
            if all(v is None for v in vals):
                out[f.name] = None
                continue
            if any(v is None for v in vals):
                raise ValueError(
                    f"cannot batch conditionings where only some have '{f.name}'; give every pass the same "
                    f"kinds of conditions (e.g. an empty transcript instead of none)."
                )
            out[f.name] = vals
        # pad variable-length contexts and build masks where lengths differ
        for ctx, mask in (("v_context", "v_context_mask"), ("a_context", "a_context_mask"), ("speech", "speech_mask")):
            vals = out[ctx]
            if vals is None:
                continue
            masks = out[mask] or [None] * len(vals)
            longest = max(v.shape[1] for v in vals)
            padded, pmasks = [], []
            for v, m in zip(vals, masks):
                if m is None:
                    m = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
                extra = longest - v.shape[1]
                if extra:
                    v = torch.cat([v, v.new_zeros(v.shape[0], extra, v.shape[2])], 1)
                    m = torch.cat([m, m.new_zeros(m.shape[0], extra)], 1)
                padded.append(v)
                pmasks.append(m)
            out[ctx] = torch.cat(padded)
            same = all(v.shape[1] == longest for v in vals) and out[mask] is None
            out[mask] = None if same else torch.cat(pmasks)
        if out["a_ref"] is not None:
            out["a_ref"] = torch.cat(out["a_ref"])
        return HarmonyConditions(**out)


@dataclass(frozen=True)
class ForwardOptions:
    """Per-call switches, e.g. for modality-isolated guidance passes or skip-layer guidance.

    Attributes:
        a2v: run the local audio->video attention.
        v2a: run the local video->audio attention.
        style: run the global style alignment of the reference-audio tokens.
        fusion: run Ovi's global fusion attention (when the model has it).
        skip_blocks: indices of dual-stream blocks to skip entirely (Ovi's SLG skips block 11).
    """

    a2v: bool = True
    v2a: bool = True
    style: bool = True
    fusion: bool = True
    skip_blocks: tuple[int, ...] = ()
