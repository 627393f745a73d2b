"""Text conditioning: the bundle's own encoders (``HARMONY_TEXT``) or a core ``CLIP`` (umT5).

A CONDITIONING entry is ``[v_context [1, L_v, D], {"harmony_text": {...}}]``: the tensor is the
video prompt (so core conditioning nodes that look at it keep working) and the dict carries the
audio caption, the transcript features and the masks (see ``model.text_payload``).
"""

from __future__ import annotations

from typing import Any

from ...harmony_core.engine import HarmonyEngine
from ...harmony_core.model.conditions import HarmonyConditions
from .model import TEXT_KEY, text_payload

__all__ = ["HarmonyTextEncoders", "encode_conditioning"]


class HarmonyTextEncoders:
    """``HARMONY_TEXT``: a bundle's caption encoder (all-MiniLM-L6-v2, from its pip package) and
    transcript encoder."""

    def __init__(self, engine: HarmonyEngine, name: str) -> None:
        self.engine, self.name = engine, name

    def __repr__(self) -> str:
        return f"HarmonyTextEncoders({self.name})"

    def encode(self, video_prompt: str, audio_caption: str, transcript: str) -> HarmonyConditions:
        """Conditioning of one clip (batch 1)."""
        return self.engine.encode_text([video_prompt], [transcript], audio_captions=[audio_caption])


def _clip_tokens(clip: Any, text: str) -> Any:
    """``[1, L, D]`` token features of a core CLIP (e.g. umT5 from CLIPLoader type "wan")."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens(tokens)


def encode_conditioning(video_prompt: str, audio_caption: str, transcript: str, *,
                        text_encoders: HarmonyTextEncoders | None, clip: Any, node: str) -> list:
    """Encode the three texts into a Harmony CONDITIONING.

    The audio caption defaults to the video prompt when empty; an empty transcript means nobody
    speaks. With a ``clip``, prompt and caption go through it; the transcript still needs the
    bundle's transcript encoder (``text_encoders``) when the model has a transcript path.

    Raises:
        ValueError: when neither encoder is connected.
    """
    caption = audio_caption if audio_caption.strip() else video_prompt
    if clip is None and text_encoders is None:
        raise ValueError(f"{node}: connect text_encoders (from 'Harmony Model Loader') or a clip (umT5 from "
                         "'Load CLIP' with type 'wan') to encode the prompt.")
    if clip is None:
        cond = text_encoders.encode(video_prompt, caption, transcript)
    else:
        v_ctx = _clip_tokens(clip, video_prompt).float().cpu()
        a_ctx = _clip_tokens(clip, caption).float().cpu()
        speech = speech_mask = None
        if text_encoders is not None:
            own = text_encoders.encode(video_prompt, caption, transcript)
            speech, speech_mask = own.speech, own.speech_mask
        cond = HarmonyConditions(v_context=v_ctx, a_context=a_ctx, speech=speech, speech_mask=speech_mask)
    cond = cond.to("cpu")
    return [[cond.v_context, {TEXT_KEY: text_payload(cond)}]]
