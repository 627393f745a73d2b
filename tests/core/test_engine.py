"""HarmonyEngine and media I/O on a small random bundle: shapes, modes, files."""

from __future__ import annotations

import pytest
import torch

from harmony_core.engine import HarmonyEngine
from harmony_core.io.bundle import load_bundle, save_bundle
from harmony_core.io.media import probe_streams, read_audio, read_video, write_mp4
from harmony_core.sampling.guidance import GuidanceConfig
from tests._bundles import make_random_bundle


@pytest.fixture(scope="module")
def engine():
    return HarmonyEngine(make_random_bundle())


def test_bundle_round_trips_bit_for_bit(tmp_path):
    bundle = make_random_bundle(seed=3)
    save_bundle(tmp_path / "b.safetensors", bundle)
    back = load_bundle(tmp_path / "b.safetensors")
    for a, b in ((bundle.dit, back.dit), (bundle.video_vae, back.video_vae), (bundle.transcript, back.transcript)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    assert back.info["resolution"] == [64, 64] and back.config == bundle.config


def test_a_tampered_bundle_is_refused_naming_the_part_and_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    from harmony_core.io.checkpoints import read_metadata

    save_bundle(tmp_path / "b.safetensors", make_random_bundle())
    tensors = load_file(tmp_path / "b.safetensors")
    tensors.pop("dit.video_model.head.head.weight")
    save_file(tensors, tmp_path / "bad.safetensors", metadata=read_metadata(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match=r"\[dit\].*1 missing key\(s\): video_model.head.head.weight"):
        load_bundle(tmp_path / "bad.safetensors")


def test_t2av_generation_gives_a_clip_of_the_requested_length(engine):
    out = engine.generate("a red ball bouncing", seconds=1.0, steps=2, seed=0)
    assert out.frames.shape == (1, 25, 64, 64, 3) and out.waveform.shape == (1, 1, round(25 / 24 * 16000))
    assert 0 <= float(out.frames.min()) and float(out.frames.max()) <= 1 and torch.isfinite(out.waveform).all()


def test_a2v_returns_the_users_own_audio(engine):
    wave = torch.sin(torch.arange(48000) / 48000 * 2 * torch.pi * 440)[None].repeat(2, 1) * 0.5  # stereo 48 kHz
    out = engine.generate(
        "a face", mode="a2v", audio=(wave, 48000), seconds=1.0, steps=2, guidance=GuidanceConfig.sync(audio=1.0)
    )
    from harmony_core.engine import resample_audio

    expect = resample_audio(wave.mean(0, keepdim=True), 48000, 16000)  # 1.0 s; the clip is 25 frames = 1.04 s
    assert out.waveform.shape[-1] == round(25 / 24 * 16000)
    torch.testing.assert_close(out.waveform[0, :, :16000], expect, rtol=1e-5, atol=1e-5)
    assert torch.all(out.waveform[0, :, 16000:] == 0)


def test_v2a_keeps_the_users_frames(engine):
    frames = torch.rand(30, 48, 80, 3, generator=torch.Generator().manual_seed(0))  # 30 fps, odd size
    out = engine.generate("drums", mode="v2a", video=(frames, 30.0), steps=2)
    expect = engine.fit_frames(frames, 30.0)
    assert torch.equal(out.frames[0], expect)
    assert out.waveform.shape[-1] == round(expect.shape[0] / 24 * 16000)


def test_mp4_has_an_h264_video_stream_and_an_aac_audio_stream(tmp_path):
    from harmony_core.data.synthetic import generate_clip

    clip = generate_clip(2, family="flash", seconds=1.0)
    write_mp4(tmp_path / "clip.mp4", clip.frames, clip.fps, clip.waveform, clip.sample_rate)
    info = probe_streams(tmp_path / "clip.mp4")
    assert info["video"]["codec"] == "h264" and info["video"]["frames"] == 25
    assert info["audio"]["codec"] == "aac" and info["audio"]["sample_rate"] == 16000
    frames, fps, audio = read_video(tmp_path / "clip.mp4")
    assert frames.shape == (25, 64, 64, 3) and fps == 24.0 and audio[1] == 16000
    assert (frames - clip.frames).abs().mean() < 0.02  # h264 at crf 18
    assert abs(audio[0].shape[1] - clip.waveform.shape[0]) < 2048  # AAC pads to whole 1024-sample frames


def test_reading_audio_from_a_file_without_audio_says_so(tmp_path):
    write_mp4(tmp_path / "silent.mp4", torch.zeros(5, 16, 16, 3), 24.0)
    with pytest.raises(ValueError, match="has no audio stream"):
        read_audio(tmp_path / "silent.mp4")


def test_text_cfg_on_a_model_never_trained_with_the_empty_prompt_warns(caplog):
    import dataclasses
    import logging

    bundle = make_random_bundle()
    guided = GuidanceConfig.text_cfg()
    for cond_drop, warned in ((0.0, True), (0.1, False)):
        engine = HarmonyEngine(
            dataclasses.replace(bundle, info={**bundle.info, "train_config": {"cond_drop": cond_drop}})
        )
        assert engine.unconditional_trained() is (cond_drop > 0)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="harmony_core.engine"):
            engine.generate("a beep", seconds=0.5, steps=1, guidance=guided)
            engine.generate("a beep", seconds=0.5, steps=1)  # SyncCFG runs no empty-prompt pass: never warned
        assert sum("cond_drop=0" in r.getMessage() for r in caplog.records) == int(warned)
    assert HarmonyEngine(bundle).unconditional_trained() is None  # a bundle without training info
