"""Stage presets: the paper's three training stages (§4.1, App. B), our synthetic run and a test run.

A preset bundles a :class:`~.config.TrainConfig`, the data options, the model preset name, the
forward switches, and which parameters train. Paper stages, in order (each starts from the weights
of the previous one, ``--init``):

``audio_pretrain`` (stage 1, 100k steps at batch 1536)
    Trains the audio branch alone. Decision: the dual-stream DiT always runs both towers, so "audio
    alone" is made exact by switching every interaction off (``ForwardOptions(a2v=False,
    v2a=False, style=False, fusion=False)``): the audio output then does not depend on the video
    stream at all (the clip's clean video is fed at ``v_t = 0`` and ignored), only the V2A task is
    drawn (audio noised and scored), and only ``dit.audio_model.*`` (minus the cross-modal
    ``v2a`` / ``style`` modules, which have nothing to attend to yet) and the transcript encoder
    train. The reference is a random 1-3 s segment of the same clip, in half of the batches (the
    paper does not give the ratio; the other half keeps plain text-to-audio alive).
``timbre`` (stage 2, +20k steps)
    As stage 1 but the reference comes from a *different* clip of the same timbre (the synthetic
    world renders a partner clip with the same voice / drum / beep; see ``latents.TIMBRE_KEYS``),
    in 70% of the batches, so the model learns to take timbre, not content, from it.
``joint`` (stage 3, 10k steps at batch 128)
    All parameters, all interactions, Cross-Task Synergy with weights 1 / 0.1 / 0.3, constant LR
    1e-5, shift 5, references (timbre partners) in half of the batches.

``synthetic`` trains the shipped tiny model on the synthetic world from scratch in one joint stage
(all parameters from step 0; a from-scratch model needs a much larger LR than the paper's
fine-tuning, and a cosine decay of it: samples from weights trained at the final, lower LR are much
cleaner; an unshifted sigma distribution, since these latents are tiny; 10 % of the samples with the
empty prompt, so that text CFG has a trained unconditional branch to guide against),
and ``tiny`` is a seconds-long smoke run for tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import HarmonyConfig, TowerConfig
from ..data.synthetic import FAMILIES
from ..model.conditions import ForwardOptions
from ..text.transcript import TranscriptEncoderConfig
from .config import TrainConfig
from .model import HarmonyTrainModel

__all__ = ["DataConfig", "StagePreset", "STAGES", "get_stage", "apply_trainable", "fit_model_config"]


@dataclass(frozen=True)
class DataConfig:
    """Where the training clips come from (the CLI builds the latent cache from these).

    Attributes:
        clips: number of synthetic clips (ignored for a folder).
        seed: seed of synthetic clip 0 (clip i uses seed + i).
        seconds: clip durations, cycled over the clips; few distinct values give few length buckets.
        families: synthetic families drawn.
        height, width: frame size in pixels (multiples of the video VAE's spatial stride).
        timbre_partners: render a same-timbre partner clip per synthetic clip for ``ref_mode=timbre``.
        max_seconds: folder videos are cut to at most this long (paper: clips of at most 10 s).
    """

    clips: int = 64
    seed: int = 0
    seconds: tuple[float, ...] = (2.0,)
    families: tuple[str, ...] = FAMILIES
    height: int = 64
    width: int = 64
    timbre_partners: bool = False
    max_seconds: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", tuple(float(s) for s in self.seconds))
        object.__setattr__(self, "families", tuple(self.families))
        if self.clips < 1:
            raise ValueError(f"DataConfig.clips={self.clips} is invalid: expected >= 1.")
        if not self.seconds or any(s <= 0 for s in self.seconds):
            raise ValueError(f"DataConfig.seconds={self.seconds} is invalid: expected durations > 0, e.g. 2.0.")
        bad = [f for f in self.families if f not in FAMILIES]
        if not self.families or bad:
            raise ValueError(f"DataConfig.families={self.families} is invalid: expected names from {FAMILIES}.")
        if self.max_seconds <= 0:
            raise ValueError(f"DataConfig.max_seconds={self.max_seconds} is invalid: expected > 0.")


def _everything(name: str) -> bool:
    return True


def _audio_branch(name: str) -> bool:
    """Stage 1/2: the audio tower (not its cross-modal modules) and the transcript encoder."""
    if name.startswith("transcript."):
        return True
    return name.startswith("dit.audio_model.") and ".v2a." not in name and ".style." not in name


@dataclass(frozen=True)
class StagePreset:
    """One training stage.

    Attributes:
        name: preset name.
        description: one line for ``--help``.
        model: ``harmony_core.config`` preset the model starts from (channels and text width are
            then fitted to the latent cache).
        train: the run's config.
        data: where clips come from.
        options: forward switches of every training step.
        trainable: ``name -> bool`` over ``HarmonyTrainModel.named_parameters()``.
        transcript: transcript-encoder shape (``dim`` is set to the model's ``speech_dim``).
    """

    name: str
    description: str
    model: str
    train: TrainConfig
    data: DataConfig = field(default_factory=DataConfig)
    options: ForwardOptions = field(default_factory=ForwardOptions)
    trainable: Callable[[str], bool] = _everything
    transcript: TranscriptEncoderConfig = field(default_factory=TranscriptEncoderConfig)


_AUDIO_ONLY = ForwardOptions(a2v=False, v2a=False, style=False, fusion=False)


def _audio_pretrain() -> StagePreset:
    return StagePreset(
        name="audio_pretrain",
        description="paper stage 1: audio branch alone, reference = 1-3 s of the same clip",
        model="harmony-full",
        train=TrainConfig(steps=100_000, batch_size=1536, lr=1e-5, probs=(0.0, 0.0, 1.0), weights=(0.0, 0.0, 1.0),
                          ref_prob=0.5, ref_seconds=(1.0, 3.0), ref_mode="same", precision="bf16",
                          grad_checkpointing=True, log_every=50, ckpt_every=2000, keep_last=3),
        data=DataConfig(seconds=(10.0,)),
        options=_AUDIO_ONLY,
        trainable=_audio_branch,
    )


def _timbre() -> StagePreset:
    base = _audio_pretrain()
    return dataclasses.replace(
        base,
        name="timbre",
        description="paper stage 2: audio branch, reference from another clip of the same timbre",
        train=dataclasses.replace(base.train, steps=20_000, ref_prob=0.7, ref_mode="timbre"),
        data=dataclasses.replace(base.data, timbre_partners=True),
    )


def _joint() -> StagePreset:
    return StagePreset(
        name="joint",
        description="paper stage 3: all parameters, Cross-Task Synergy 1/0.1/0.3, constant LR 1e-5",
        model="harmony-full",
        train=TrainConfig(steps=10_000, batch_size=128, lr=1e-5, probs=(0.5, 0.25, 0.25), weights=(1.0, 0.1, 0.3),
                          ref_prob=0.5, ref_mode="timbre", precision="bf16", grad_checkpointing=True,
                          log_every=50, ckpt_every=1000, keep_last=3),
        data=DataConfig(seconds=(10.0,), timbre_partners=True),
    )


def _synthetic() -> StagePreset:
    # Measured on 800-step probes (held-out flow-matching error of the video stream, 48 unseen clips):
    # lr 3e-4 -> 0.68, 1e-3 -> 0.45, 2e-3 -> 0.35 at batch 8, 0.28 at batch 16 (1.7x the step time).
    # shift 1: the paper's shift 5 (made for 48 x 44 x 80 Wan latents) puts 83 % of the samples of
    # these 8 x 8 latents above sigma 0.5 and left the fine detail untrained (blobs instead of lamps).
    return StagePreset(
        name="synthetic",
        description="the shipped tiny model: joint training from scratch on the synthetic world",
        model="synthetic",
        train=TrainConfig(steps=2400, batch_size=16, lr=2e-3, warmup=200, lr_schedule="cosine", weight_decay=0.01,
                          ema_decay=0.999, ema_start=100, shift=1.0, cond_drop=0.1, ref_prob=0.3,
                          ref_seconds=(0.5, 1.0), log_every=25, ckpt_every=500),
        data=DataConfig(clips=256, seconds=(2.0,)),
    )


def _tiny() -> StagePreset:
    return StagePreset(
        name="tiny",
        description="seconds-long smoke run for tests",
        model="tiny",
        train=TrainConfig(steps=4, batch_size=2, lr=1e-3, ema_decay=0.9, log_every=1, ckpt_every=2,
                          ref_prob=0.5, ref_seconds=(0.1, 0.3)),
        data=DataConfig(clips=4, seconds=(0.5,)),
        transcript=TranscriptEncoderConfig(num_blocks=1),
    )


STAGES: dict[str, Callable[[], StagePreset]] = {
    "audio_pretrain": _audio_pretrain,
    "timbre": _timbre,
    "joint": _joint,
    "synthetic": _synthetic,
    "tiny": _tiny,
}


def get_stage(name: str) -> StagePreset:
    """The named stage preset (see ``STAGES``)."""
    try:
        return STAGES[name]()
    except KeyError:
        raise ValueError(f"unknown stage preset {name!r}: expected one of {sorted(STAGES)}.") from None


def apply_trainable(model: HarmonyTrainModel, preset: StagePreset) -> int:
    """Set ``requires_grad`` from the preset's filter; returns the number of trainable tensors."""
    n = 0
    for name, p in model.named_parameters():
        keep = bool(preset.trainable(name))
        p.requires_grad_(keep)
        n += keep
    return n


def fit_model_config(
    config: HarmonyConfig, *, video_channels: int, audio_channels: int, text_dim: int
) -> HarmonyConfig:
    """``config`` with latent channels and caption width taken from the latent cache."""

    def fit(t: TowerConfig, channels: int) -> TowerConfig:
        return dataclasses.replace(t, in_channels=channels, text_dim=text_dim)

    return dataclasses.replace(
        config, video=fit(config.video, video_channels), audio=fit(config.audio, audio_channels)
    )
