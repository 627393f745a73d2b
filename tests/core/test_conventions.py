"""Our latent-convention constants against numbers measured on the reference modules.

``tests/fixtures/ovi/conventions.json`` was produced by instantiating Ovi's vendored MMAudio mel
converter, 16 kHz VAE and BigVGAN vocoder and its Wan2.2 VAE (random weights) and measuring the
shapes they produce, plus Ovi's engine table of latent lengths.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harmony_core.config import TimelineConfig, get_preset
from harmony_core.io.conventions import MMAUDIO_16K, OVI_AUDIO_ROPE_SCALE, OVI_CLIPS, OVI_FPS, WAN22_VAE

REF = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "ovi" / "conventions.json").read_text())


def test_mmaudio_16k_framing_matches_the_reference_mel_converter():
    mel = REF["mmaudio_16k_mel"]
    assert (MMAUDIO_16K.sample_rate, MMAUDIO_16K.n_fft, MMAUDIO_16K.win_length) == (
        mel["sampling_rate"],
        mel["n_fft"],
        mel["win_size"],
    )
    assert (MMAUDIO_16K.hop_length, MMAUDIO_16K.n_mels) == (mel["hop_size"], mel["num_mels"])
    assert (MMAUDIO_16K.f_min, MMAUDIO_16K.f_max, MMAUDIO_16K.log) == (mel["fmin"], mel["fmax"], mel["log"])
    assert mel["mel_basis_shape"] == [MMAUDIO_16K.n_mels, MMAUDIO_16K.n_fft // 2 + 1]
    for samples, frames in mel["mel_frames_for_samples"].items():
        assert MMAUDIO_16K.mel_frames(int(samples)) == frames, samples


def test_mmaudio_16k_latents_match_the_reference_vae_and_vocoder():
    vae, voc = REF["mmaudio_16k_vae"], REF["bigvgan_16k"]
    assert MMAUDIO_16K.latent_channels == vae["latent_channels"]
    for mel_frames, (_, channels, latents) in vae["encode_mel_to_latent_shape"].items():
        assert channels == MMAUDIO_16K.latent_channels
        assert latents == int(mel_frames) // MMAUDIO_16K.latent_downsample
    for latents, (_, _, mel_frames) in vae["decode_latent_to_mel_shape"].items():
        assert mel_frames == int(latents) * MMAUDIO_16K.latent_downsample
    assert math.prod(voc["upsample_rates"]) == MMAUDIO_16K.hop_length
    assert voc["samples_for_10_mel_frames"] == 10 * MMAUDIO_16K.hop_length
    assert MMAUDIO_16K.latent_rate == 31.25 and MMAUDIO_16K.samples_for_latents(157) == 80384
    assert MMAUDIO_16K.latents_for_samples(5 * 16000) == 156  # 5 s encodes to 156, Ovi generates 157


def test_wan22_vae_geometry_matches_the_reference_vae():
    ref = REF["wan22_vae"]
    assert WAN22_VAE.latent_channels == ref["config"]["z_dim"]
    for frames, (_, channels, t, h, w) in ref["encode_pixels_1x3xFx32x48_to_latent_shape"].items():
        assert channels == WAN22_VAE.latent_channels
        assert t == WAN22_VAE.latent_frames(int(frames))
        assert (h, w) == WAN22_VAE.latent_size(32, 48)
    _, _, frames, height, width = ref["decode_latent_1x48x3x2x3_to_pixel_shape"]
    assert frames == WAN22_VAE.pixel_frames(3) and (height, width) == (2 * 16, 3 * 16)
    with pytest.raises(ValueError, match="multiple of 16"):
        WAN22_VAE.latent_size(30, 48)


def test_ovi_clip_table_and_audio_rope_scale_match_the_engine_and_our_preset():
    for name, spec in REF["ovi_engine_latent_lengths"].items():
        clip = OVI_CLIPS[name]
        assert (clip.video_latents, clip.audio_latents, clip.area) == (
            spec["video_latent_length"],
            spec["audio_latent_length"],
            spec["video_area"],
        )
    assert OVI_FPS == REF["ovi_save_video_defaults"]["fps"]
    assert MMAUDIO_16K.sample_rate == REF["ovi_save_video_defaults"]["sample_rate"]
    assert OVI_AUDIO_ROPE_SCALE == REF["ovi_audio_temporal_rope_scaling_factor"]
    assert get_preset("ovi").audio.rope_time_scale == OVI_AUDIO_ROPE_SCALE
    # the scale is video latents per audio latent over the exact duration of 121 frames at 24 fps
    seconds = WAN22_VAE.pixel_frames(31) / OVI_FPS
    assert 31 / (seconds * MMAUDIO_16K.latent_rate) == pytest.approx(OVI_AUDIO_ROPE_SCALE, abs=5e-6)


def test_our_timeline_defaults_are_the_ovi_conventions():
    tl = TimelineConfig()
    assert tl.fps == OVI_FPS and tl.vae_time_stride == WAN22_VAE.time_stride
    assert tl.audio_latent_rate == MMAUDIO_16K.latent_rate and tl.causal_first_frame
    assert tl.video_latent_frames(121) == 31 and tl.video_latent_frames(241) == 61
    # Ovi's 10 s checkpoint hard-codes 2 x 157 = 314 audio latents, one more than the encoder's floor
    # for 241 frames (313.8 -> 313); Ovi-checkpoint clip lengths therefore come from OVI_CLIPS.
    assert tl.audio_latents_for_video(61) == OVI_CLIPS["960x960_10s"].audio_latents - 1


def test_our_audio_length_for_a_5_second_ovi_clip_is_ovis():
    assert TimelineConfig().audio_latents_for_video(31) == OVI_CLIPS["720x720_5s"].audio_latents
