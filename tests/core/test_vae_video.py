"""Tests for harmony_core.vae.video (the small causal video VAE), its save/load and its training loop."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from harmony_core.config import TimelineConfig
from harmony_core.data.clip import Clip
from harmony_core.vae.common import load_vae, save_vae
from harmony_core.vae.train import compute_latent_stats, reconstruction_report, train_video_vae
from harmony_core.vae.video import VideoVAE, VideoVAEConfig

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convs are much faster single-threaded, and far faster on a shared, busy CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# A narrow config keeps the tests fast; the geometry is the default one (×4 time, ×8 space).
SMALL = VideoVAEConfig(latent_channels=6, channels=(16, 16, 32))


def _vae(config: VideoVAEConfig = SMALL, seed: int = 0) -> VideoVAE:
    torch.manual_seed(seed)  # test-side seeding of the weight init only
    return VideoVAE(config).eval()


def _clip(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def _moving_square_clip(seed: int, frames: int = 9, size: int = 32) -> Clip:
    """A coloured square sliding over a flat background, as the test's own tiny AV world."""
    g = torch.Generator().manual_seed(seed)
    bg, fg = torch.rand(3, generator=g) * 0.5, 0.5 + torch.rand(3, generator=g) * 0.5
    x0, y0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
    vx, vy = torch.randint(-2, 3, (2,), generator=g).tolist()
    img = bg.expand(frames, size, size, 3).clone()
    side = size // 4
    for t in range(frames):
        x, y = (x0 + vx * t) % (size - side), (y0 + vy * t) % (size - side)
        img[t, y : y + side, x : x + side] = fg
    return Clip(frames=img, waveform=torch.zeros(16000), fps=24.0, sample_rate=16000, caption="square", family="ball")


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 5, 9, 17, 49])
@pytest.mark.parametrize("hw", [(64, 64), (32, 48), (8, 16)])
def test_latent_and_decoded_shapes_follow_the_wan_time_rule_and_eightfold_space(frames, hw):
    h, w = hw
    vae = _vae()
    with torch.no_grad():
        latent = vae.encode(_clip(2, frames, h, w))
        out = vae.decode(latent)
    t_v = TimelineConfig().video_latent_frames(frames)  # the project's timeline, not the VAE's own maths
    assert latent.shape == (2, SMALL.latent_channels, t_v, h // 8, w // 8)
    assert vae.latent_shape(frames, h, w) == (t_v, h // 8, w // 8)
    assert out.shape == (2, 3, frames, h, w)
    assert vae.pixel_frames(t_v) == frames
    assert out.abs().max() <= 1.0


def test_default_config_has_twelve_latent_channels_and_strides_four_and_eight():
    vae = VideoVAE()
    assert (vae.latent_channels, vae.time_stride, vae.spatial_stride) == (12, 4, 8)
    n_params = sum(p.numel() for p in vae.parameters())
    assert 2e5 < n_params < 2.5e6


# ---------------------------------------------------------------------------------------------
# Causality
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 1, 2, 3])
def test_encoder_latent_i_ignores_pixel_frames_after_its_span_and_sees_the_next_span(i):
    vae, tl = _vae(), TimelineConfig()
    x = _clip(1, 17, 16, 16, seed=1)
    end = int(tl.video_frame_span(i)[1])  # pixel frames [0, end) may influence latent i
    x2 = x.clone()
    x2[:, :, end:] = _clip(1, 17 - end, 16, 16, seed=2)
    with torch.no_grad():
        z, z2 = vae.encode(x), vae.encode(x2)
    torch.testing.assert_close(z[:, :, : i + 1], z2[:, :, : i + 1], rtol=0, atol=1e-6)
    # the change does reach the next latent frame, so the check above is not vacuous
    assert (z[:, :, i + 1] - z2[:, :, i + 1]).abs().max() > 1e-3


def test_latent_frame_zero_encodes_pixel_frame_zero_alone():
    vae = _vae()
    x = _clip(1, 9, 16, 16, seed=3)
    single = x[:, :, :1]
    with torch.no_grad():
        assert torch.allclose(vae.encode(x)[:, :, :1], vae.encode(single), atol=1e-6)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_decoder_frames_up_to_latent_i_span_ignore_later_latents(i):
    vae = _vae()
    g = torch.Generator().manual_seed(4)
    z = torch.randn(1, SMALL.latent_channels, 5, 2, 2, generator=g)
    z2 = z.clone()
    z2[:, :, i + 1 :] = torch.randn(z2[:, :, i + 1 :].shape, generator=g)
    with torch.no_grad():
        y, y2 = vae.decoder(z), vae.decoder(z2)  # unclamped, so no saturation hides a difference
    end = int(TimelineConfig().video_frame_span(i)[1])
    torch.testing.assert_close(y[:, :, :end], y2[:, :, :end], rtol=0, atol=1e-6)
    assert (y[:, :, end : end + 4] - y2[:, :, end : end + 4]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-4


# ---------------------------------------------------------------------------------------------
# Sampling, normalisation, persistence
# ---------------------------------------------------------------------------------------------


def test_encode_is_deterministic_and_sampling_is_reproducible_with_a_generator():
    vae = _vae()
    x = _clip(1, 5, 16, 16)
    with torch.no_grad():
        mean_a, mean_b = vae.encode(x), vae.encode(x)
        s1 = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(7))
        s2 = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(7))
        s3 = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(mean_a, mean_b)
    assert torch.equal(s1, s2)
    assert not torch.allclose(s1, s3)
    # samples scatter around the mean with the posterior std
    with torch.no_grad():
        _, logvar = vae.posterior(x)
    z_scores = (s1 - mean_a) / torch.exp(0.5 * logvar)
    assert 0.7 < float(z_scores.std()) < 1.3
    with pytest.raises(ValueError, match="generator"):
        vae.encode(x, sample=True)


def test_latent_normalisation_is_applied_in_encode_and_undone_in_decode():
    vae = _vae()
    x = _clip(1, 5, 16, 16)
    g = torch.Generator().manual_seed(5)
    mean, std = torch.randn(SMALL.latent_channels, generator=g), torch.rand(SMALL.latent_channels, generator=g) + 0.5
    with torch.no_grad():
        raw, _ = vae.posterior(x)
        vae.set_latent_stats(mean, std)
        latent = vae.encode(x)
        torch.testing.assert_close(latent, (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1))
        torch.testing.assert_close(vae.decode(latent), vae.decode_raw(raw))
    with pytest.raises(ValueError, match="std > 0"):
        vae.set_latent_stats(mean, torch.zeros_like(std))


def test_computed_latent_stats_make_encoded_latents_zero_mean_unit_variance():
    vae = _vae()
    batches = [_clip(2, 9, 16, 16, seed=s) * 0.5 for s in range(3)]
    compute_latent_stats(vae, batches)
    with torch.no_grad():
        z = torch.cat([vae.encode(b) for b in batches]).transpose(0, 1).reshape(SMALL.latent_channels, -1)
    torch.testing.assert_close(z.mean(1), torch.zeros(SMALL.latent_channels), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(1, correction=0), torch.ones(SMALL.latent_channels), atol=1e-3, rtol=0)


def test_save_and_load_round_trip_gives_bit_identical_outputs(tmp_path):
    config = VideoVAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_kernel=3)
    vae = _vae(config, seed=3)
    vae.set_latent_stats(torch.arange(4.0), torch.full((4,), 2.0))
    path = tmp_path / "sub" / "video_vae.safetensors"
    save_vae(path, vae)
    loaded = load_vae(path)
    assert isinstance(loaded, VideoVAE) and loaded.config == config
    assert not list(path.parent.glob(".tmp_vae_*"))  # the temp file was renamed away
    x = _clip(1, 9, 16, 24)
    with torch.no_grad():
        assert torch.equal(vae.encode(x), loaded.encode(x))
        assert torch.equal(vae.decode(vae.encode(x)), loaded.decode(loaded.encode(x)))


def test_strict_load_names_missing_unexpected_and_misshaped_keys(tmp_path):
    vae = _vae()
    path = tmp_path / "v.safetensors"
    save_vae(path, vae)
    tensors = load_file(str(path))
    tensors.pop("encoder.conv_in.weight")
    tensors["encoder.extra.weight"] = torch.zeros(1)
    tensors["decoder.conv_out.bias"] = torch.zeros(5)
    meta = {"kind": "video_vae", "config": json.dumps(SMALL.to_dict())}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError) as err:
        load_vae(path)
    msg = str(err.value)
    assert "encoder.conv_in.weight" in msg and "encoder.extra.weight" in msg and "decoder.conv_out.bias" in msg
    assert "missing" in msg and "unexpected" in msg and "mis-shaped" in msg
    save_file(tensors, str(path))  # no metadata at all
    with pytest.raises(ValueError, match="not a harmony_core VAE"):
        load_vae(path)


def test_config_validates_and_round_trips_through_a_dict():
    cfg = VideoVAEConfig(latent_channels=16, channels=[24, 48])
    assert cfg.channels == (24, 48) and cfg.spatial_stride == 4
    assert VideoVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="latent_channels"):
        VideoVAEConfig(latent_channels=0)
    with pytest.raises(ValueError, match="does not match"):
        VideoVAEConfig.from_dict({"latent_channels": 4, "bogus": 1})


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


def test_bad_video_inputs_fail_with_messages_that_name_the_fix():
    vae = _vae()
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match=r"T=6 frames.*1 \+ 4\*k"):
        vae.encode(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(ValueError, match="60x64.*multiples of 8"):
        vae.encode(torch.zeros(1, 3, 5, 60, 64))
    with pytest.raises(TypeError, match="floating point"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels"):
        vae.decode(torch.zeros(1, SMALL.latent_channels + 1, 2, 2, 2))
    with pytest.raises(ValueError, match="5 dims"):
        vae.decode(torch.zeros(SMALL.latent_channels, 2, 2, 2))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def test_a_few_training_steps_reduce_the_reconstruction_loss_and_set_latent_stats():
    clips = [_moving_square_clip(s) for s in range(6)]
    torch.manual_seed(0)
    before = reconstruction_report(VideoVAE(SMALL), clips, n=3)
    torch.manual_seed(0)
    vae, history = train_video_vae(SMALL, clips, steps=40, batch_size=2, frames=9, lr=3e-3, seed=0, log_every=0)
    assert len(history) == 40 and {"loss", "rec", "edge", "kl"} <= history[0].keys()
    first = sum(h["rec"] for h in history[:5]) / 5
    last = sum(h["rec"] for h in history[-5:]) / 5
    assert last < 0.7 * first
    assert not torch.equal(vae.latent_std, torch.ones(SMALL.latent_channels))
    after = reconstruction_report(vae, clips, n=3)
    assert after["psnr_db"] > before["psnr_db"] + 3
    assert 0.3 < after["latent_std"] < 3.0


def test_training_rejects_a_frame_count_that_is_not_one_plus_four_k():
    with pytest.raises(ValueError, match="frames=8"):
        train_video_vae(SMALL, [_moving_square_clip(0)], steps=1, frames=8)


def test_command_line_trains_saves_a_loadable_file_and_reports_psnr(tmp_path):
    pytest.importorskip("harmony_core.data.synthetic")
    from harmony_core.vae.train import main

    out = tmp_path / "video_vae.safetensors"
    argv = ["video", "--out", str(out), "--steps", "2", "--batch-size", "1", "--clips", "2", "--report-clips", "1",
            "--latent-channels", "4", "--log-every", "0"]
    report = main(argv)
    assert load_vae(out).latent_channels == 4
    assert report["clips"] == 1 and 0 < report["psnr_db"] < 60


def test_files_written_before_the_per_frame_stage_decode_group_wise():
    old = {k: v for k, v in VideoVAEConfig().to_dict().items() if k != "subframe_channels"}
    assert VideoVAEConfig.from_dict(old).subframe_channels == 0
    assert VideoVAEConfig().subframe_channels > 0


def test_the_per_frame_stage_can_draw_different_frames_inside_one_latent_group():
    torch.manual_seed(0)
    for sc in (0, 8):
        vae = VideoVAE(dataclasses.replace(SMALL, subframe_channels=sc))
        z = torch.randn(1, SMALL.latent_channels, 3, 2, 2)
        x = vae.decode_raw(z)  # [1, 3, 9, 16, 16]: frame 0, then groups of 4
        assert x.shape[2] == 9
        groups = x[:, :, 1:].reshape(1, 3, 2, 4, *x.shape[-2:])
        assert groups.std(dim=3).mean() > 1e-3  # frames of a group differ (random weights)


def test_training_crops_are_square_and_at_most_the_crop_size():
    from harmony_core.vae.train import _video_batch

    clips = [_moving_square_clip(i) for i in range(2)]
    x = _video_batch(clips, 9, 4, 8, torch.Generator().manual_seed(0), crop=8)
    assert x.shape[-2:] == (8, 8) and x.shape[2] == 9
