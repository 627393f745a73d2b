"""The latent cache: clips encoded once by the frozen VAEs and the frozen caption encoder.

Training never touches pixels, waveforms or the caption encoder: every clip is stored as

* ``v_x0``: normalised video latent ``[C_v, T_v, H, W]`` (``VideoVAE.encode``, posterior mean);
* ``a_x0``: normalised audio latent ``[C_a, T_a]`` (``AudioVAE.encode``, posterior mean);
* ``caption``: the caption encoder's token states ``[L, text_dim]``, real tokens only (the
  collate pads batches and builds masks), computed under ``no_grad``;
* ``transcript``: the spoken words as a string (the transcript encoder is trained, so it runs in
  the training step);
* ``ref_pool``: optional ``[C_a, T_p]`` audio latent of a *different* clip with the same timbre
  (same speaker voice, same drum, ...) for the timbre-disentanglement stage (paper §4.1, stage 2).

The cache also keeps ``null_caption``, the caption encoder's token states of the empty prompt
``""`` (exactly what generation feeds the negative / unconditional pass of text CFG), so training
can drop captions (``TrainConfig.cond_drop``) into the same condition the sampler guides against.

A cache lives in memory and round-trips through one safetensors file (:meth:`LatentCache.save` /
:meth:`LatentCache.load`); the metadata keeps the VAE and caption-encoder configs so a cache is
never silently used with another VAE.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from ..data.clip import Clip
from ..data.synthetic import WorldConfig, generate_clip
from ..io.checkpoints import atomic_save_file, load_tensors, read_metadata

__all__ = [
    "LATENT_CACHE_FORMAT",
    "TIMBRE_KEYS",
    "LatentItem",
    "LatentCache",
    "build_latent_cache",
    "check_cache_vaes",
    "synthetic_timbre_partner",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)

LATENT_CACHE_FORMAT = "harmony-latents/1"

# Parameters of each synthetic family that set what its sound *sounds like* (pitch, decay, tone),
# as opposed to when it sounds: two clips sharing them are "the same speaker / the same drum".
TIMBRE_KEYS: dict[str, tuple[str, ...]] = {
    "face": ("f0",),
    "ball": ("radius",),
    "drum": ("freq", "tau"),
    "flash": ("freq", "tau", "tone"),
}
# Seed offset of timbre partners: far from the seeds of a dataset's own clips.
_PARTNER_SEED_OFFSET = 1_000_003


class CaptionEncoderLike(Protocol):
    """Anything with ``encode(texts) -> (tokens [B, L, D], mask [B, L])`` (e.g. ``CaptionEncoder``)."""

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``[B, L, D]`` and bool mask ``[B, L]`` of B captions."""
        ...


@dataclass
class LatentItem:
    """One cached clip.

    Attributes:
        v_x0: ``[C_v, T_v, H, W]`` normalised video latent.
        a_x0: ``[C_a, T_a]`` normalised audio latent.
        caption: ``[L, text_dim]`` caption-encoder token states (real tokens only, L >= 1).
        transcript: spoken words, ``""`` for none.
        caption_text: the caption string (for logs and inspection).
        family: the clip's generator family or ``"real"``.
        ref_pool: ``[C_a, T_p]`` audio latent of a same-timbre partner clip, or None.
    """

    v_x0: torch.Tensor
    a_x0: torch.Tensor
    caption: torch.Tensor
    transcript: str = ""
    caption_text: str = ""
    family: str = "real"
    ref_pool: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.v_x0.dim() != 4:
            raise ValueError(f"v_x0 has shape {tuple(self.v_x0.shape)}: expected [C_v, T_v, H, W].")
        if self.a_x0.dim() != 2:
            raise ValueError(f"a_x0 has shape {tuple(self.a_x0.shape)}: expected [C_a, T_a].")
        if self.caption.dim() != 2 or self.caption.shape[0] < 1:
            raise ValueError(f"caption has shape {tuple(self.caption.shape)}: expected [L >= 1, text_dim].")
        if self.ref_pool is not None and (self.ref_pool.dim() != 2 or self.ref_pool.shape[0] != self.a_x0.shape[0]):
            raise ValueError(
                f"ref_pool has shape {tuple(self.ref_pool.shape)}: expected [{self.a_x0.shape[0]}, T_p] like a_x0."
            )

    @property
    def length_key(self) -> tuple[int, int]:
        """``(T_v, T_a)``: clips batch together only when these are equal."""
        return int(self.v_x0.shape[1]), int(self.a_x0.shape[1])


class LatentCache(Dataset):
    """An in-memory list of :class:`LatentItem` with shared shapes and provenance.

    Args:
        items: the cached clips; all share channel counts, latent H/W and caption width.
        meta: provenance (VAE configs, caption-encoder name), stored with the cache.
        null_caption: ``[L0, text_dim]`` token states of the empty prompt (what the sampler's
            unconditional pass sees); None for caches built before condition dropout existed.
    """

    def __init__(
        self,
        items: Sequence[LatentItem],
        *,
        meta: dict[str, Any] | None = None,
        null_caption: torch.Tensor | None = None,
    ) -> None:
        self.items = list(items)
        self.meta = dict(meta or {})
        if not self.items:
            raise ValueError("a LatentCache needs at least one clip; pass a non-empty list of LatentItem.")
        first = self.items[0]
        if null_caption is not None and (
            null_caption.dim() != 2 or null_caption.shape[0] < 1 or null_caption.shape[1] != first.caption.shape[1]
        ):
            raise ValueError(
                f"null_caption has shape {tuple(null_caption.shape)}: expected [L >= 1, {first.caption.shape[1]}] "
                f"(the caption encoder's token states of the empty prompt, as wide as the clips' captions)."
            )
        self.null_caption = null_caption
        def v_shape(it: LatentItem) -> tuple[int, ...]:
            return (it.v_x0.shape[0], *it.v_x0.shape[2:])

        for i, it in enumerate(self.items):
            for what, a, b in (
                ("video latent [C_v, H, W]", v_shape(it), v_shape(first)),
                ("audio channels C_a", it.a_x0.shape[0], first.a_x0.shape[0]),
                ("caption width", it.caption.shape[1], first.caption.shape[1]),
            ):
                if a != b:
                    raise ValueError(
                        f"clip {i} has {what} {a} but clip 0 has {b}: a cache must come from one VAE pair, one "
                        f"caption encoder and one frame size. Re-encode the clips with the same models."
                    )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> LatentItem:
        return self.items[index]

    # --- shapes ----------------------------------------------------------------------------------
    @property
    def video_channels(self) -> int:
        """C_v of the video latents."""
        return int(self.items[0].v_x0.shape[0])

    @property
    def audio_channels(self) -> int:
        """C_a of the audio latents."""
        return int(self.items[0].a_x0.shape[0])

    @property
    def text_dim(self) -> int:
        """Width of the caption token states."""
        return int(self.items[0].caption.shape[1])

    def length_keys(self) -> list[tuple[int, int]]:
        """``(T_v, T_a)`` of every clip, in index order."""
        return [it.length_key for it in self.items]

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must find unchanged: size, length buckets and widths."""
        buckets = Counter(f"{tv}x{ta}" for tv, ta in self.length_keys())
        return {
            "clips": len(self),
            "buckets": dict(sorted(buckets.items())),
            "video": [self.video_channels, *map(int, self.items[0].v_x0.shape[2:])],
            "audio_channels": self.audio_channels,
            "text_dim": self.text_dim,
            "ref_pools": sum(it.ref_pool is not None for it in self.items),
        }

    # --- file I/O --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every tensor and the per-clip strings to one safetensors file (atomically)."""
        tensors: dict[str, torch.Tensor] = {}
        rows = []
        for i, it in enumerate(self.items):
            tensors[f"{i}.v"] = it.v_x0
            tensors[f"{i}.a"] = it.a_x0
            tensors[f"{i}.caption"] = it.caption
            if it.ref_pool is not None:
                tensors[f"{i}.ref"] = it.ref_pool
            rows.append({"transcript": it.transcript, "caption": it.caption_text, "family": it.family})
        if self.null_caption is not None:
            tensors["null_caption"] = self.null_caption
        meta = {"format": LATENT_CACHE_FORMAT, "items": json.dumps(rows), "meta": json.dumps(self.meta, sort_keys=True)}
        atomic_save_file(tensors, path, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatentCache:
        """Read a cache written by :meth:`save`."""
        src = os.fspath(path)
        header = read_metadata(src)
        if header.get("format") != LATENT_CACHE_FORMAT:
            raise ValueError(
                f"{src!r} is not a latent cache (format={header.get('format')!r}, expected "
                f"{LATENT_CACHE_FORMAT!r}). Build one with `python -m harmony_core train ... --save-latents PATH`."
            )
        tensors = load_tensors(src)
        rows = json.loads(header["items"])
        items = []
        for i, row in enumerate(rows):
            try:
                items.append(
                    LatentItem(
                        v_x0=tensors[f"{i}.v"],
                        a_x0=tensors[f"{i}.a"],
                        caption=tensors[f"{i}.caption"],
                        transcript=row["transcript"],
                        caption_text=row["caption"],
                        family=row["family"],
                        ref_pool=tensors.get(f"{i}.ref"),
                    )
                )
            except KeyError as e:
                raise ValueError(
                    f"latent cache {src!r} lacks {e} for clip {i}; the file is damaged. Rebuild it."
                ) from e
        return cls(items, meta=json.loads(header.get("meta", "{}")), null_caption=tensors.get("null_caption"))


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def _clip_video(clip: Clip) -> torch.Tensor:
    """``[T, H, W, 3]`` in 0..1 -> ``[1, 3, T, H, W]`` in [-1, 1]."""
    return clip.frames.float().permute(3, 0, 1, 2)[None] * 2.0 - 1.0


def _clip_audio(clip: Clip, sample_rate: int) -> torch.Tensor:
    if clip.sample_rate != sample_rate:
        raise ValueError(
            f"clip has sample_rate={clip.sample_rate} Hz but the audio VAE runs at {sample_rate} Hz. "
            f"Build the dataset at {sample_rate} Hz (FolderAVDataset(sample_rate=...))."
        )
    return clip.waveform.float().reshape(1, -1)


@torch.no_grad()
def build_latent_cache(
    clips: Iterable[Clip],
    *,
    video_vae: torch.nn.Module,
    audio_vae: torch.nn.Module,
    caption_encoder: CaptionEncoderLike,
    partner: Callable[[Clip], Clip | None] | None = None,
    device: torch.device | str | None = None,
    caption_batch: int = 32,
) -> LatentCache:
    """Encode clips with the frozen VAEs and caption encoder (posterior means, no randomness).

    Args:
        clips: the clips (e.g. a ``SyntheticAVDataset`` or ``FolderAVDataset``).
        video_vae: a trained ``VideoVAE`` (frozen: used under ``no_grad`` in eval mode).
        audio_vae: a trained ``AudioVAE``.
        caption_encoder: returns token states ``[B, L, D]`` and mask ``[B, L]`` for captions.
        partner: returns a same-timbre partner clip (or None) whose audio latent becomes the
            clip's ``ref_pool``, e.g. :func:`synthetic_timbre_partner`.
        device: where the VAEs run (latents are stored on the CPU).
        caption_batch: captions encoded per call.

    Returns:
        The :class:`LatentCache`, with the VAE configs in ``meta``.
    """
    video_vae.eval()
    audio_vae.eval()
    if device is not None:
        video_vae.to(device)
        audio_vae.to(device)
    dev = next(video_vae.parameters()).device
    sample_rate = int(audio_vae.sample_rate)
    partial: list[dict[str, Any]] = []
    for n, clip in enumerate(clips):
        v = video_vae.encode(_clip_video(clip).to(dev))[0].float().cpu()
        a = audio_vae.encode(_clip_audio(clip, sample_rate).to(dev))[0].float().cpu()
        ref = None
        if partner is not None:
            other = partner(clip)
            if other is not None:
                ref = audio_vae.encode(_clip_audio(other, sample_rate).to(dev))[0].float().cpu()
        partial.append({"v": v, "a": a, "ref": ref, "caption": clip.caption, "transcript": clip.transcript,
                        "family": clip.family})
        if (n + 1) % 50 == 0:
            log.info("encoded %d clips", n + 1)
    if not partial:
        raise ValueError("no clips to encode: the dataset is empty. Pass --clips N >= 1 or a folder with videos.")
    captions = [p["caption"] for p in partial]
    null_tokens, null_mask = caption_encoder.encode([""])  # the unconditional prompt (cond_drop trains it)
    null_caption = null_tokens[0][null_mask[0]].float().cpu()
    items = []
    for start in range(0, len(captions), caption_batch):
        tokens, mask = caption_encoder.encode(captions[start : start + caption_batch])
        for j in range(tokens.shape[0]):
            p = partial[start + j]
            items.append(
                LatentItem(
                    v_x0=p["v"],
                    a_x0=p["a"],
                    caption=tokens[j][mask[j]].float().cpu(),
                    transcript=p["transcript"],
                    caption_text=p["caption"],
                    family=p["family"],
                    ref_pool=p["ref"],
                )
            )
    meta = {
        "video_vae": video_vae._config_dict(),
        "audio_vae": audio_vae._config_dict(),
        "video_vae_sha256": weights_fingerprint(video_vae),
        "audio_vae_sha256": weights_fingerprint(audio_vae),
        "caption_encoder": type(caption_encoder).__name__,
    }
    cache = LatentCache(items, meta=meta, null_caption=null_caption)
    log.info("latent cache: %s", cache.fingerprint())
    return cache


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes, bytes): identifies the exact weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_cache_vaes(cache: LatentCache, video_vae: torch.nn.Module, audio_vae: torch.nn.Module) -> None:
    """Raise ``ValueError`` unless ``cache`` was encoded by exactly these VAEs (when it records them)."""
    for key, vae in (("video_vae", video_vae), ("audio_vae", audio_vae)):
        stored = cache.meta.get(f"{key}_sha256")
        if stored is not None and stored != weights_fingerprint(vae):
            raise ValueError(
                f"the latent cache was encoded with another {key.replace('_', ' ')} (weights differ): its latents "
                f"would not decode with this one. Rebuild the cache (drop --latents) or pass the VAE that built it."
            )


def synthetic_timbre_partner(
    clip: Clip, *, config: WorldConfig | None = None, tries: int = 4
) -> Clip | None:
    """Another synthetic clip with the same timbre (``TIMBRE_KEYS``) but new content and timing.

    Stage 2 of the paper takes the reference from another utterance of the same speaker; in the
    synthetic world "the same speaker" is the same voice pitch (``face``), the same drum, and so on.
    Returns None for clips that are not synthetic or whose timbre cannot be re-used (a sampled
    partner failed the family's checks ``tries`` times).

    Args:
        clip: a clip from :func:`~harmony_core.data.synthetic.generate_clip`.
        config: the world configuration the clip was made with.
        tries: partner seeds to try.
    """
    keys = TIMBRE_KEYS.get(clip.family)
    if keys is None or "seed" not in clip.params:
        return None
    params = {k: clip.params[k] for k in keys}
    for t in range(tries):
        seed = int(clip.params["seed"]) + _PARTNER_SEED_OFFSET * (t + 1)
        try:
            return generate_clip(seed, family=clip.family, seconds=clip.seconds, config=config, params=params)
        except ValueError:  # the partner's other parameters clash with the fixed timbre: try another
            continue
    return None
