"""Training, latent statistics and reconstruction reports for the small video and audio VAEs.

Both loops take any map-style dataset (``__len__`` + ``__getitem__``) or iterable of
:class:`~harmony_core.data.clip.Clip`, draw random crops with an explicit generator, and optimise
reconstruction + ``kl_weight`` × KL with AdamW under a warmup + cosine learning rate. After
training they store per-channel latent statistics (:func:`compute_latent_stats`) so ``encode``
returns roughly zero-mean unit-variance latents.

Command line (the lead's real training; needs ``harmony_core.data.synthetic``)::

    python -m harmony_core.vae.train video --steps 3000 --out models/vae/video_vae.safetensors
    python -m harmony_core.vae.train audio --steps 3000 --out models/vae/audio_vae.safetensors
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ..data.clip import Clip
from .audio import AudioVAE, AudioVAEConfig
from .common import LatentVAE, gaussian_kl, load_vae, save_vae
from .video import VideoVAE, VideoVAEConfig

log = logging.getLogger(__name__)

__all__ = [
    "clip_to_video",
    "clip_to_waveform",
    "train_video_vae",
    "train_audio_vae",
    "compute_latent_stats",
    "reconstruction_report",
    "main",
]

History = list[dict[str, float]]
Callback = Callable[[dict[str, float]], None]


# ---------------------------------------------------------------------------------------------
# Clip → tensors and random crops
# ---------------------------------------------------------------------------------------------


def clip_to_video(clip: Clip) -> torch.Tensor:
    """``Clip.frames`` ``[T, H, W, 3]`` in 0..1 → ``[3, T, H, W]`` float32 in [-1, 1]."""
    frames = clip.frames
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"clip.frames has shape {tuple(frames.shape)}: expected [T, H, W, 3] in 0..1.")
    return frames.float().permute(3, 0, 1, 2) * 2.0 - 1.0


def clip_to_waveform(clip: Clip, sample_rate: int) -> torch.Tensor:
    """``Clip.waveform`` → ``[S]`` float32 mono, checking the sample rate."""
    if clip.sample_rate != sample_rate:
        raise ValueError(
            f"clip has sample_rate={clip.sample_rate} but the audio VAE runs at {sample_rate} Hz. "
            "Resample the clip (e.g. torchaudio.functional.resample) before training."
        )
    wave = clip.waveform.float()
    if wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.dim() != 1:
        raise ValueError(f"clip.waveform has shape {tuple(wave.shape)}: expected mono [S].")
    return wave


class _ClipSource:
    # Endless stream of clips: random indices for map-style datasets, cycling for iterables.
    def __init__(self, dataset: Iterable[Clip] | Any, generator: torch.Generator) -> None:
        self.dataset, self.generator = dataset, generator
        self.indexable = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
        if self.indexable and len(dataset) == 0:
            raise ValueError("dataset is empty: expected at least one Clip.")
        self._it: Iterator[Clip] | None = None

    def next(self) -> Clip:
        if self.indexable:
            i = int(torch.randint(len(self.dataset), (1,), generator=self.generator))
            clip = self.dataset[i]
        else:
            for _attempt in range(2):
                if self._it is None:
                    self._it = iter(self.dataset)
                try:
                    clip = next(self._it)
                    break
                except StopIteration:
                    self._it = None
            else:
                raise ValueError("dataset iterable yielded no clips: expected at least one Clip.")
        if not isinstance(clip, Clip):
            raise TypeError(f"dataset yielded {type(clip).__name__}: expected harmony_core.data.clip.Clip.")
        return clip


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (1,), generator=generator)) if high > 1 else 0


def _video_batch(clips: list[Clip], frames: int, stride: int, spatial: int, gen: torch.Generator,
                 crop: int | None = None) -> torch.Tensor:
    # Random window of `frames` (1 + stride*k) pixel frames and a random spatial crop (at most
    # `crop` pixels a side; the VAE is fully convolutional, so small crops train it as well, faster).
    vids = [clip_to_video(c) for c in clips]
    t = min(frames, min(v.shape[1] for v in vids))
    t = 1 + (t - 1) // stride * stride
    h = min(v.shape[2] for v in vids) // spatial * spatial
    w = min(v.shape[3] for v in vids) // spatial * spatial
    if crop:
        h, w = min(h, crop // spatial * spatial), min(w, crop // spatial * spatial)
    if h == 0 or w == 0:
        shapes = [tuple(v.shape) for v in vids]
        raise ValueError(f"clips are smaller than the VAE's spatial stride {spatial}: got [3, T, H, W] = {shapes}.")
    out = []
    for v in vids:
        t0, y0 = _randint(v.shape[1] - t + 1, gen), _randint(v.shape[2] - h + 1, gen)
        x0 = _randint(v.shape[3] - w + 1, gen)
        out.append(v[:, t0 : t0 + t, y0 : y0 + h, x0 : x0 + w])
    return torch.stack(out)  # [B, 3, T, H, W]


def _audio_batch(clips: list[Clip], samples: int, sample_rate: int, gen: torch.Generator) -> torch.Tensor:
    # Random window of `samples` samples; short clips are zero-padded at the end.
    out = []
    for c in clips:
        wave = clip_to_waveform(c, sample_rate)
        if wave.shape[0] < samples:
            wave = F.pad(wave, (0, samples - wave.shape[0]))
        s0 = _randint(wave.shape[0] - samples + 1, gen)
        out.append(wave[s0 : s0 + samples])
    return torch.stack(out)  # [B, S]


# ---------------------------------------------------------------------------------------------
# Training loops
# ---------------------------------------------------------------------------------------------


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    # Linear warmup, then cosine decay to 10 % of the peak.
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _check_train_args(steps: int, batch_size: int, lr: float, kl_weight: float) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} is invalid: expected an int >= 1.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid: expected an int >= 1.")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} is invalid: expected > 0 (e.g. 1e-3).")
    if kl_weight < 0:
        raise ValueError(f"kl_weight={kl_weight!r} is invalid: expected >= 0 (e.g. 1e-4).")


def _fit(
    vae: LatentVAE,
    make_batch: Callable[[], torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]],
    *, steps: int, lr: float, seed: int, log_every: int, callback: Callback | None,
) -> History:
    # Shared AdamW loop; loss_fn returns a dict whose "loss" entry is optimised.
    noise_gen = torch.Generator().manual_seed(seed + 1)
    batch = make_batch()  # first batch before anything else, so bad data fails up front
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4, betas=(0.9, 0.99))
    warmup = min(100, max(1, steps // 10))
    history: History = []
    vae.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        terms = loss_fn(batch if step == 0 else make_batch(), noise_gen)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(f"VAE training loss became {float(terms['loss'])} at step {step}; lower lr.")
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        record = {"step": float(step), "lr": opt.param_groups[0]["lr"]}
        record.update({k: float(v.detach()) for k, v in terms.items()})
        history.append(record)
        if callback is not None:
            callback(record)
        if log_every and (step % log_every == 0 or step == steps - 1):
            log.info("step %d/%d  %s", step, steps, "  ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "step"))
    vae.eval()
    return history


def train_video_vae(
    config: VideoVAEConfig | None,
    dataset: Iterable[Clip] | Any,
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    frames: int = 17,
    kl_weight: float = 1e-4,
    edge_weight: float = 0.5,
    motion_weight: float = 2.0,
    crop: int | None = None,
    seed: int = 0,
    log_every: int = 50,
    callback: Callback | None = None,
    vae: VideoVAE | None = None,
    stats_batches: int = 8,
) -> tuple[VideoVAE, History]:
    """Train a :class:`VideoVAE` on random crops of the dataset's clips.

    Loss per batch: ``L1(x̂, x) + edge_weight · L1(∇x̂, ∇x) + motion_weight · L2(∂ₜx̂, ∂ₜx) +
    kl_weight · KL`` where ``∇`` are the horizontal and vertical pixel differences (a cheap edge
    loss that keeps shapes sharp), ``∂ₜ`` the difference between consecutive frames, and KL the
    mean per-element KL of the posterior to N(0, 1). The decoder sees a posterior sample.

    Why the motion term: with plain pixel losses a small moving object (a 4-pixel ball) is a tiny
    part of the loss, so the decoder learns to draw one smeared position per 4-frame latent group
    and jumps between groups. That destroys exactly the timing the sync metrics and the DiT need
    (measured: the round trip alone moved the estimated audio-visual offset by 0.47 s on the eval
    scenes). The frame-difference error is zero on static pixels and penalises both the smear and the
    jumps at group boundaries.

    Args:
        config: architecture (``None`` = defaults); ignored when ``vae`` is given.
        dataset: map-style dataset or iterable of :class:`Clip` (frames ``[T, H, W, 3]`` in 0..1).
        steps: optimiser steps.
        batch_size: clips per step.
        lr: peak AdamW learning rate (warmup then cosine decay to 10 %).
        frames: pixel frames per crop (``1 + 4k``; shorter clips use their longest valid length).
        kl_weight: weight of the KL term.
        edge_weight: weight of the gradient (edge) L1 term.
        motion_weight: weight of the frame-difference (motion) term (squared error: an L1 on
            frame differences is minimised by drawing no motion at all where motion is sparse).
        crop: random square crops of at most this many pixels a side (None = whole frames).
        seed: seeds crop selection and posterior noise (two explicit generators).
        log_every: log every this many steps (0 = never).
        callback: called after every step with the history record.
        vae: continue training this model instead of building a new one.
        stats_batches: batches used for the latent statistics afterwards.

    Returns:
        ``(vae, history)``: the trained VAE in eval mode with latent stats set, and one record per
        step with ``step``, ``lr``, ``loss``, ``rec``, ``edge``, ``motion``, ``kl``.
    """
    _check_train_args(steps, batch_size, lr, kl_weight)
    if motion_weight < 0 or edge_weight < 0:
        raise ValueError(f"edge_weight={edge_weight!r}, motion_weight={motion_weight!r}: expected weights >= 0.")
    vae = vae if vae is not None else VideoVAE(config)
    gen = torch.Generator().manual_seed(seed)
    source = _ClipSource(dataset, gen)
    stride, spatial = vae.time_stride, vae.spatial_stride
    if frames < 1 or (frames - 1) % stride:
        raise ValueError(f"frames={frames} is invalid: expected 1 + {stride}*k (e.g. 17).")
    device = vae.latent_mean.device

    def make_batch() -> torch.Tensor:
        return _video_batch([source.next() for _ in range(batch_size)], frames, stride, spatial, gen, crop).to(device)

    def loss_fn(x: torch.Tensor, noise_gen: torch.Generator) -> dict[str, torch.Tensor]:
        mean, logvar = vae.posterior(x)
        x_hat = vae.decoder(vae.draw(mean, logvar, noise_gen))
        rec = (x_hat - x).abs().mean()
        edge = (x_hat.diff(dim=-1) - x.diff(dim=-1)).abs().mean() + (x_hat.diff(dim=-2) - x.diff(dim=-2)).abs().mean()
        motion = (x_hat.diff(dim=2) - x.diff(dim=2)).pow(2).mean()
        kl = gaussian_kl(mean, logvar)
        loss = rec + edge_weight * edge + motion_weight * motion + kl_weight * kl
        return {"loss": loss, "rec": rec, "edge": edge, "motion": motion, "kl": kl}

    history = _fit(vae, make_batch, loss_fn, steps=steps, lr=lr, seed=seed, log_every=log_every, callback=callback)
    compute_latent_stats(vae, [make_batch() for _ in range(stats_batches)])
    return vae, history


def train_audio_vae(
    config: AudioVAEConfig | None,
    dataset: Iterable[Clip] | Any,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    seconds: float = 2.0,
    kl_weight: float = 1e-4,
    seed: int = 0,
    log_every: int = 50,
    callback: Callback | None = None,
    vae: AudioVAE | None = None,
    stats_batches: int = 8,
) -> tuple[AudioVAE, History]:
    """Train an :class:`AudioVAE` on random waveform crops, with L1 loss on log10-mel.

    Loss per batch: ``L1(mel̂, mel) + kl_weight · KL`` (mel in log10 units; the decoder sees a
    posterior sample). A spectral loss on Griffin-Lim output is deliberately left out: it would
    cost tens of STFTs per step for little gain on a mel VAE.

    Args:
        config: architecture (``None`` = defaults); ignored when ``vae`` is given.
        dataset: map-style dataset or iterable of :class:`Clip` (mono waveform ``[S]`` at 16 kHz).
        steps: optimiser steps.
        batch_size: crops per step.
        lr: peak AdamW learning rate (warmup then cosine decay to 10 %).
        seconds: crop length, rounded to whole latent frames (512 samples).
        kl_weight: weight of the KL term.
        seed: seeds crop selection and posterior noise.
        log_every: log every this many steps (0 = never).
        callback: called after every step with the history record.
        vae: continue training this model instead of building a new one.
        stats_batches: batches used for the latent statistics afterwards.

    Returns:
        ``(vae, history)`` as in :func:`train_video_vae`, records with ``loss``, ``rec``, ``kl``.
    """
    _check_train_args(steps, batch_size, lr, kl_weight)
    vae = vae if vae is not None else AudioVAE(config)
    gen = torch.Generator().manual_seed(seed)
    source = _ClipSource(dataset, gen)
    samples = vae.latent_frames(round(seconds * vae.sample_rate)) * vae.samples_per_latent
    device = vae.latent_mean.device

    def make_batch() -> torch.Tensor:
        wave = _audio_batch([source.next() for _ in range(batch_size)], samples, vae.sample_rate, gen)
        with torch.no_grad():
            return vae.waveform_to_mel(wave.to(device))  # [B, n_mels, 2*T_a]

    def loss_fn(mel: torch.Tensor, noise_gen: torch.Generator) -> dict[str, torch.Tensor]:
        mean, logvar = vae.posterior_mel(mel)
        mel_hat = vae.decode_mel_raw(vae.draw(mean, logvar, noise_gen))
        rec = (mel_hat - mel).abs().mean()
        kl = gaussian_kl(mean, logvar)
        return {"loss": rec + kl_weight * kl, "rec": rec, "kl": kl}

    history = _fit(vae, make_batch, loss_fn, steps=steps, lr=lr, seed=seed, log_every=log_every, callback=callback)
    compute_latent_stats(vae, [make_batch() for _ in range(stats_batches)])
    return vae, history


@torch.no_grad()
def compute_latent_stats(vae: LatentVAE, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Set ``vae.latent_mean`` / ``latent_std`` from the raw posterior means of ``batches``.

    Args:
        vae: a :class:`VideoVAE` (batches ``[B, 3, T, H, W]``) or :class:`AudioVAE` (batches of
            log-mel ``[B, n_mels, 2*T_a]``).
        batches: inputs to encode.

    Returns:
        The per-channel ``(mean, std)`` that were stored, ``[C]`` each.
    """
    posterior = vae.posterior_mel if isinstance(vae, AudioVAE) else vae.posterior
    was_training = vae.training
    vae.eval()
    # Per-channel sums in float64 so long datasets do not lose precision.
    total, total_sq, count = 0.0, 0.0, 0
    for x in batches:
        mean, _ = posterior(x)
        z = mean.transpose(0, 1).reshape(vae.latent_channels, -1).double()  # [C, N]
        total, total_sq, count = total + z.sum(1), total_sq + z.pow(2).sum(1), count + z.shape[1]
    if count < 2:
        raise ValueError("compute_latent_stats needs at least two latent positions; pass more data.")
    mu = total / count
    std = (total_sq / count - mu.pow(2)).clamp_min(1e-8).sqrt().clamp_min(1e-3)
    vae.set_latent_stats(mu.float(), std.float())
    vae.train(was_training)
    return vae.latent_mean.clone(), vae.latent_std.clone()


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def reconstruction_report(vae: LatentVAE, dataset: Iterable[Clip] | Any, n: int = 16) -> dict[str, float]:
    """Reconstruction quality on the first ``n`` clips (whole clips, no cropping beyond validity).

    Video: ``psnr_db`` (pixels in 0..1, averaged per clip), ``l1`` (in [-1, 1] units),
    ``motion_l1`` (L1 of the frame differences, in [-1, 1] units), ``sync_desync_s`` (mean
    |audio-visual offset| that `harmony_core.metrics.sync` measures between the reconstructed frames
    and the clip's own soundtrack, in seconds: what the round trip alone does to sync; clips
    without sound are skipped, so it is an average over the clips with sound) and
    ``latent_std`` (std of the normalised latents, ≈ 1 when the stats fit the data).
    Audio: ``mel_l1`` (log10-mel L1 of the VAE's mel output), ``mel_snr_db``
    (``10·log10(Σ mel² / Σ (mel̂ − mel)²)`` on linear mel magnitudes), ``gl_mel_l1`` (log10-mel L1
    after Griffin-Lim and re-analysis, i.e. the whole waveform path; dominated by faint noise in
    near-silent bins), ``gl_spectral_convergence`` (``‖mel(GL(mel̂)) − mel‖ / ‖mel‖`` on linear mel
    magnitudes; 0 is perfect) and ``latent_std``.

    Args:
        vae: a trained :class:`VideoVAE` or :class:`AudioVAE`.
        dataset: map-style dataset or iterable of :class:`Clip`.
        n: number of clips.

    Returns:
        Metric name → value, plus ``clips`` (how many were used).
    """
    from ..metrics.sync import sync_report

    vae.eval()
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        clips = [dataset[i] for i in range(min(n, len(dataset)))]
    else:
        clips = [c for _, c in zip(range(n), dataset)]
    if not clips:
        raise ValueError("reconstruction_report got no clips: the dataset is empty.")
    sums: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value

    for clip in clips:
        if isinstance(vae, VideoVAE):
            x = clip_to_video(clip)
            t = 1 + (x.shape[1] - 1) // vae.time_stride * vae.time_stride
            p = vae.spatial_stride
            x = x[None, :, :t, : x.shape[2] // p * p, : x.shape[3] // p * p].to(vae.latent_mean.device)
            latent = vae.encode(x)
            x_hat = vae.decode(latent)
            mse = ((x_hat - x) / 2).pow(2).mean().clamp_min(1e-10)
            add("psnr_db", float(10 * torch.log10(1.0 / mse)))
            add("l1", float((x_hat - x).abs().mean()))
            add("motion_l1", float((x_hat.diff(dim=2) - x.diff(dim=2)).abs().mean()))
            if clip.waveform.numel():
                # How far the round trip alone moves the audio-visual offset (the clip's own audio).
                frames_hat = ((x_hat[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()
                rep = sync_report(frames_hat, clip.waveform, fps=clip.fps, sample_rate=clip.sample_rate)
                add("sync_desync_s", rep.desync_s if rep.valid else 1.0)
        elif isinstance(vae, AudioVAE):
            mel = vae.waveform_to_mel(clip_to_waveform(clip, vae.sample_rate)[None].to(vae.latent_mean.device))
            latent = vae.encode_mel(mel)
            mel_hat = vae.decode_mel(latent)
            add("mel_l1", float((mel_hat - mel).abs().mean()))
            lin, lin_hat = torch.pow(10.0, mel), torch.pow(10.0, mel_hat)
            add("mel_snr_db", float(10 * torch.log10(lin.pow(2).sum() / (lin_hat - lin).pow(2).sum().clamp_min(1e-12))))
            wave = vae.mel.griffin_lim(mel_hat, n_iter=vae.griffin_lim_iters)
            add("gl_mel_l1", float((vae.mel(wave) - mel).abs().mean()))
            add("gl_spectral_convergence", float((vae.mel.mel(wave) - lin).norm() / lin.norm().clamp_min(1e-12)))
        else:
            raise TypeError(f"reconstruction_report expects a VideoVAE or AudioVAE, got {type(vae).__name__}.")
        add("latent_std", float(latent.std()))
    report = {k: v / len(clips) for k, v in sums.items()}
    if "sync_desync_s" in sums:
        report["sync_desync_s"] = sums["sync_desync_s"] / sum(1 for c in clips if c.waveform.numel())
    report["clips"] = float(len(clips))
    return report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


class _GeneratedClips:
    # Map-style dataset over harmony_core.data.synthetic.generate_clip(seed0 + i), cached compactly
    # (frames as uint8) so every epoch after the first is free.
    def __init__(self, n: int, seed0: int, seconds: float | None) -> None:
        try:
            from ..data.synthetic import generate_clip
        except ImportError as e:  # the synthetic world is written by another module
            raise ImportError(f"harmony_core.data.synthetic is needed for the CLI dataset: {e}") from e
        self._gen, self.n, self.seed0, self.seconds = generate_clip, n, seed0, seconds
        self._cache: dict[int, tuple[Clip, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Clip:
        if i not in self._cache:
            clip = self._gen(self.seed0 + i, seconds=self.seconds)
            frames8 = (clip.frames.clamp(0, 1) * 255).round().to(torch.uint8)
            clip.frames = torch.empty(0)
            self._cache[i] = (clip, frames8)
        clip, frames8 = self._cache[i]
        return Clip(**{**clip.__dict__, "frames": frames8.float() / 255})


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train one VAE on the synthetic world, save it, and return its reconstruction report.

    Args:
        argv: command-line arguments (``None`` = ``sys.argv[1:]``); see ``--help``.
    """
    ap = argparse.ArgumentParser(prog="python -m harmony_core.vae.train", description=main.__doc__)
    ap.add_argument("modality", choices=["video", "audio"])
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 8 (video), 16 (audio)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument("--motion-weight", type=float, default=2.0, help="video only: frame-difference loss weight")
    ap.add_argument("--frames", type=int, default=17, help="video only: pixel frames per training crop (1 + 4k)")
    ap.add_argument("--crop", type=int, default=None, help="video only: square crop size in pixels (default: whole)")
    ap.add_argument("--init", default=None, help="continue training this VAE file instead of a new one")
    ap.add_argument("--clips", type=int, default=512, help="distinct synthetic clips (seeds seed..seed+clips-1)")
    ap.add_argument("--clip-seconds", type=float, default=None, help="synthetic clip length (default: generator's)")
    ap.add_argument("--report-clips", type=int, default=32, help="held-out clips for the final report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latent-channels", type=int, default=None)
    ap.add_argument("--channels", default=None, help="video only: level widths, e.g. 64,96,128 (default: config's)")
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train_set = _GeneratedClips(args.clips, args.seed, args.clip_seconds)
    held_out = _GeneratedClips(args.report_clips, args.seed + 10_000_000, args.clip_seconds)
    common = dict(steps=args.steps, lr=args.lr, kl_weight=args.kl_weight, seed=args.seed, log_every=args.log_every)
    if args.modality == "video":
        over: dict[str, Any] = {"latent_channels": args.latent_channels} if args.latent_channels else {}
        if args.channels:
            over["channels"] = tuple(int(c) for c in args.channels.split(","))
        cfg = VideoVAEConfig(**over)
        init = load_vae(args.init) if args.init else None
        if init is not None and not isinstance(init, VideoVAE):
            raise ValueError(f"--init {args.init} holds a {type(init).__name__}: expected a video VAE file.")
        vae, _ = train_video_vae(cfg, train_set, batch_size=args.batch_size or 8, motion_weight=args.motion_weight,
                                 frames=args.frames, crop=args.crop, vae=init, **common)
    else:
        cfg_a = AudioVAEConfig(**({"latent_channels": args.latent_channels} if args.latent_channels else {}))
        init = load_vae(args.init) if args.init else None
        if init is not None and not isinstance(init, AudioVAE):
            raise ValueError(f"--init {args.init} holds a {type(init).__name__}: expected an audio VAE file.")
        vae, _ = train_audio_vae(cfg_a, train_set, batch_size=args.batch_size or 16, vae=init, **common)
    save_vae(args.out, vae)
    report = reconstruction_report(vae, held_out, args.report_clips)
    log.info("saved %s; held-out report: %s", args.out, report)
    return report


if __name__ == "__main__":
    main()
