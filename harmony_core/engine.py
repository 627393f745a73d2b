"""HarmonyEngine: one object that turns text, sound and pictures into latents, generates, and turns
latents back into frames and a waveform. The CLI, the eval harness and the ComfyUI nodes all go
through it, so there is one implementation of every conversion.

Layouts at this boundary are ComfyUI's: frames ``[B, T, H, W, 3]`` float in 0..1 (or ``[T, H, W, 3]``
for one clip), waveforms ``[B, C, S]`` float in -1..1 at any sample rate (``[S]`` / ``[C, S]`` are
accepted for one clip). Inside, video latents are ``[B, C_v, T_v, h, w]`` and audio latents
``[B, C_a, T_a]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .io.bundle import HarmonyBundle, load_bundle
from .model.conditions import HarmonyConditions
from .sampling.anchors import VAEAnchors
from .sampling.guidance import GuidanceConfig
from .sampling.pipeline import GenerationRequest, generate_latents

__all__ = ["HarmonyEngine", "GenerationResult", "resample_audio", "to_mono"]

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """A generated clip.

    Attributes:
        frames: ``[B, T, H, W, 3]`` float32 in 0..1.
        waveform: ``[B, 1, S]`` float32 in -1..1 at ``sample_rate``.
        fps, sample_rate: the clip's clocks.
        v_latent, a_latent: the sampled latents ``[B, C_v, T_v, h, w]`` and ``[B, C_a, T_a]``.
    """

    frames: torch.Tensor
    waveform: torch.Tensor
    fps: float
    sample_rate: int
    v_latent: torch.Tensor
    a_latent: torch.Tensor


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """``[S]``, ``[C, S]`` or ``[B, C, S]`` -> ``[B, S]`` by averaging channels."""
    if waveform.dim() == 1:
        return waveform[None].float()
    if waveform.dim() == 2:
        return waveform.float().mean(dim=0, keepdim=True)
    if waveform.dim() == 3:
        return waveform.float().mean(dim=1)
    raise ValueError(f"waveform has shape {tuple(waveform.shape)}: expected [S], [C, S] or [B, C, S].")


def resample_audio(waveform: torch.Tensor, orig: int, target: int) -> torch.Tensor:
    """Band-limited resampling of ``[..., S]`` from ``orig`` Hz to ``target`` Hz."""
    if orig <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive; got {orig} -> {target}.")
    if orig == target:
        return waveform
    import torchaudio.functional as taf

    return taf.resample(waveform, orig, target)


class HarmonyEngine:
    """Generation and conversion around one ``HarmonyBundle``.

    Args:
        bundle: DiT, VAEs and transcript encoder.
        caption_encoder: the frozen caption encoder (loaded from the installed package if None).
        device: where the models run.
    """

    def __init__(
        self, bundle: HarmonyBundle, *, caption_encoder: Any = None, device: torch.device | str = "cpu"
    ) -> None:
        self.bundle = bundle.to(device)
        self.device = torch.device(device)
        self._caption = caption_encoder
        self._anchors: VAEAnchors | None = None

    @classmethod
    def from_file(cls, path: str, *, device: torch.device | str = "cpu", **kw: Any) -> HarmonyEngine:
        return cls(load_bundle(path, device=device), device=device, **kw)

    # ------------------------------------------------------------------------------------------
    # Geometry
    # ------------------------------------------------------------------------------------------
    @property
    def config(self):
        return self.bundle.config

    @property
    def fps(self) -> float:
        return self.config.timeline.fps

    @property
    def sample_rate(self) -> int:
        return int(self.bundle.audio_vae.sample_rate)

    @property
    def resolution(self) -> tuple[int, int]:
        """Default (height, width) in pixels, as trained."""
        h, w = self.bundle.info.get("resolution", (64, 64))
        return int(h), int(w)

    def unconditional_trained(self) -> bool | None:
        """Whether the model was trained with the empty prompt (``TrainConfig.cond_drop > 0``), i.e.
        whether text CFG / a negative prompt has a trained branch to guide against; None when the
        bundle does not record its training (e.g. a converted checkpoint)."""
        train = self.bundle.info.get("train_config")
        if not isinstance(train, dict):
            return None
        return float(train.get("cond_drop", 0.0)) > 0.0

    def frames_for_seconds(self, seconds: float) -> int:
        return self.config.timeline.pixel_frames_for_seconds(seconds)

    def latent_shapes(
        self, frames: int, height: int, width: int, batch: int = 1
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Video and audio latent shapes of a clip of ``frames`` pixel frames (1 + 4k) at H x W."""
        vae = self.bundle.video_vae
        t_v, h, w = vae.latent_shape(frames, height, width)
        t_a = self.bundle.audio_vae.latent_frames(round(frames / self.fps * self.sample_rate))
        return (batch, vae.latent_channels, t_v, h, w), (batch, self.bundle.audio_vae.latent_channels, t_a)

    # ------------------------------------------------------------------------------------------
    # Text
    # ------------------------------------------------------------------------------------------
    def caption_encoder(self):
        if self._caption is None:
            from .text.caption import load_caption_encoder

            self._caption = load_caption_encoder(device=self.device)
        return self._caption

    @torch.no_grad()
    def encode_text(
        self, prompts: list[str], transcripts: list[str] | None = None, *, audio_captions: list[str] | None = None
    ) -> HarmonyConditions:
        """Conditioning for a batch: video prompt, audio caption (defaults to the prompt) and the
        spoken words (empty string = nobody speaks)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        b = len(prompts)
        transcripts = list(transcripts) if transcripts is not None else [""] * b
        audio_captions = list(audio_captions) if audio_captions is not None else list(prompts)
        if len(transcripts) != b or len(audio_captions) != b:
            raise ValueError(
                f"got {b} prompts, {len(transcripts)} transcripts and {len(audio_captions)} audio "
                f"captions; pass one of each per clip."
            )
        enc = self.caption_encoder()
        v_ctx, v_mask = enc.encode(prompts)
        a_ctx, a_mask = enc.encode(audio_captions)
        speech = speech_mask = None
        if self.bundle.transcript is not None and self.config.speech_dim:
            from .text.transcript import tokenize_transcript

            ids, speech_mask = tokenize_transcript(transcripts)
            speech = self.bundle.transcript(ids.to(self.device), speech_mask.to(self.device))
            speech_mask = speech_mask.to(self.device)
        return HarmonyConditions(
            v_context=v_ctx.to(self.device),
            a_context=a_ctx.to(self.device),
            speech=speech,
            v_context_mask=v_mask.to(self.device),
            a_context_mask=a_mask.to(self.device),
            speech_mask=speech_mask,
        )

    # ------------------------------------------------------------------------------------------
    # Video
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, T, H, W, 3]`` (or ``[T, H, W, 3]``) in 0..1 -> latent ``[B, C_v, T_v, h, w]``.

        T must be 1 + 4k and H, W multiples of the VAE's spatial stride (``fit_frames`` makes them so).
        """
        if frames.dim() == 4:
            frames = frames[None]
        if frames.dim() != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames have shape {tuple(frames.shape)}: expected [B, T, H, W, 3] in 0..1 (IMAGE).")
        x = frames.to(self.device, torch.float32).permute(0, 4, 1, 2, 3) * 2 - 1  # [B, 3, T, H, W]
        return self.bundle.video_vae.encode(x)

    @torch.no_grad()
    def decode_video(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, C_v, T_v, h, w]`` -> frames ``[B, T, H, W, 3]`` in 0..1."""
        x = self.bundle.video_vae.decode(latent.to(self.device, torch.float32))
        return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).nan_to_num(0.0).contiguous()

    def fit_frames(self, frames: torch.Tensor, fps: float, *, height: int | None = None, width: int | None = None,
                   num_frames: int | None = None) -> torch.Tensor:
        """Resample ``[T, H, W, 3]`` frames to the model's fps (nearest frame), resize/centre-crop to
        (height, width) and trim or pad (repeat last) to ``num_frames`` (default: the longest 1 + 4k)."""
        from .io.fit import fit_frames

        h, w = (height, width) if height and width else self.resolution
        return fit_frames(frames, fps, target_fps=self.fps, height=h, width=w,
                          time_stride=self.config.timeline.vae_time_stride, num_frames=num_frames)

    # ------------------------------------------------------------------------------------------
    # Audio
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_audio(self, waveform: torch.Tensor, sample_rate: int, *, num_latents: int | None = None) -> torch.Tensor:
        """Waveform (any rate, mono or multichannel) -> latent ``[B, C_a, T_a]``; the audio is downmixed,
        resampled to the VAE's rate and trimmed / zero-padded to ``num_latents`` if given."""
        wave = resample_audio(to_mono(waveform), int(sample_rate), self.sample_rate).to(self.device)
        if num_latents is not None:
            n = num_latents * self.bundle.audio_vae.samples_per_latent
            wave = F.pad(wave, (0, max(0, n - wave.shape[-1])))[:, :n]
        return self.bundle.audio_vae.encode(wave)

    @torch.no_grad()
    def decode_audio(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, C_a, T_a]`` -> waveform ``[B, 1, S]`` float32, finite and within [-1, 1]."""
        wave = self.bundle.audio_vae.decode(latent.to(self.device, torch.float32))
        return wave.float().nan_to_num(0.0).clamp(-1, 1).reshape(wave.shape[0], 1, -1)

    # ------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------
    def anchors(self) -> VAEAnchors:
        """SyncCFG anchors through this bundle's VAEs (silence cached per length)."""
        if self._anchors is None:
            vvae, avae = self.bundle.video_vae, self.bundle.audio_vae
            self._anchors = VAEAnchors(
                encode_audio=lambda w: avae.encode(w.to(self.device)),
                audio_samples_for=lambda t_a: t_a * avae.samples_per_latent,
                encode_video=lambda px: vvae.encode(px.to(self.device)),
                decode_video=lambda z: vvae.decode(z),
                pixel_frames_for=lambda t_v: vvae.pixel_frames(t_v),
            )
        return self._anchors

    @torch.no_grad()
    def generate(
        self,
        prompt: str | list[str],
        *,
        transcript: str | list[str] = "",
        seconds: float = 2.0,
        mode: str = "t2av",
        audio: tuple[torch.Tensor, int] | None = None,
        video: tuple[torch.Tensor, float] | None = None,
        first_frame: torch.Tensor | None = None,
        guidance: GuidanceConfig | None = None,
        steps: int = 25,
        sampler: str = "unipc",
        shift: float = 5.0,
        seed: int = 0,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> GenerationResult:
        """Generate a clip.

        Args:
            prompt: what to see and hear (one string, or one per clip in a batch).
            transcript: words to speak ("" for none).
            seconds: clip length (ignored for v2a, which keeps the given video's length).
            mode: "t2av", "a2v" (``audio=(waveform, rate)`` is kept and video drawn to match) or
                "v2a" (``video=(frames [T, H, W, 3], fps)`` is kept and sound added).
            first_frame: optional reference image ``[H, W, 3]`` in 0..1 for the first frame.
            guidance: SyncCFG by default (paper scales 3 / 2); ``GuidanceConfig.text_cfg()`` etc.
            steps, sampler, shift: the sampler schedule.
            seed: the noise seed.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        transcripts = [transcript] * len(prompts) if isinstance(transcript, str) else list(transcript)
        b = len(prompts)
        h, w = (height, width) if height and width else self.resolution
        v_clean = a_clean = None
        if mode == "v2a":
            if video is None:
                raise ValueError("mode='v2a' adds sound to a video: pass video=(frames [T, H, W, 3], fps).")
            frames = self.fit_frames(video[0], video[1], height=h, width=w)
            v_clean = self.encode_video(frames[None].expand(b, -1, -1, -1, -1))
            n_frames = frames.shape[0]
        else:
            n_frames = self.frames_for_seconds(seconds)
        v_shape, a_shape = self.latent_shapes(n_frames, h, w, b)
        if mode == "a2v":
            if audio is None:
                raise ValueError("mode='a2v' draws video for a sound: pass audio=(waveform, sample_rate).")
            a_clean = self.encode_audio(audio[0], audio[1], num_latents=a_shape[2]).expand(b, -1, -1)
        ff_latent = None
        if first_frame is not None and mode != "v2a":
            img = self.fit_frames(first_frame[None], self.fps, height=h, width=w, num_frames=1)
            ff_latent = self.encode_video(img[None])[:, :, :1].expand(b, -1, -1, -1, -1)
        guidance = guidance or GuidanceConfig.sync()
        if guidance.uses_negative and self.unconditional_trained() is False:
            log.warning(
                "this guidance runs a negative (empty-prompt) pass, but the model was trained with cond_drop=0: it "
                "never saw an empty prompt, so text CFG guides against an untrained branch and may degrade the clip. "
                "Use SyncCFG (guidance 'sync'), or a model trained with cond_drop > 0."
            )
        cond = self.encode_text(prompts, transcripts)
        neg = self.encode_text([negative_prompt] * b, [""] * b) if guidance.uses_negative else None
        request = GenerationRequest(mode=mode, steps=steps, shift=shift, sampler=sampler, guidance=guidance)
        v_lat, a_lat = generate_latents(
            self.bundle.dit,
            cond,
            v_shape=v_shape,
            a_shape=a_shape,
            request=request,
            generator=torch.Generator().manual_seed(seed),
            neg_cond=neg,
            anchors=self.anchors(),
            v_clean=v_clean,
            a_clean=a_clean,
            first_frame=ff_latent,
            device=self.device,
            callback=callback,
        )
        frames_out = self.decode_video(v_lat)
        wave = self.decode_audio(a_lat)
        n_samples = round(frames_out.shape[1] / self.fps * self.sample_rate)
        if mode == "a2v":  # hand back the user's own audio, not a VAE round trip of it
            src = resample_audio(to_mono(audio[0]), int(audio[1]), self.sample_rate)
            wave = F.pad(src, (0, max(0, n_samples - src.shape[-1])))[:, :n_samples][:, None].expand(b, 1, -1)
            wave = wave.clamp(-1, 1).contiguous()
        elif mode == "v2a":
            frames_out = frames[None].expand(b, -1, -1, -1, -1).contiguous()
        wave = F.pad(wave, (0, max(0, n_samples - wave.shape[-1])))[..., :n_samples]
        return GenerationResult(
            frames=frames_out.cpu(),
            waveform=wave.cpu(),
            fps=self.fps,
            sample_rate=self.sample_rate,
            v_latent=v_lat.cpu(),
            a_latent=a_lat.cpu(),
        )
