"""Tests for harmony_core.vae.mel (log-mel, Griffin-Lim) and harmony_core.vae.audio (the small mel VAE)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from harmony_core.config import TimelineConfig
from harmony_core.data.clip import Clip
from harmony_core.vae.audio import AudioVAE, AudioVAEConfig
from harmony_core.vae.common import load_vae, save_vae
from harmony_core.vae.mel import LogMel, MelConfig, hz_to_mel, mel_filterbank, mel_to_hz
from harmony_core.vae.train import reconstruction_report, train_audio_vae

SR = 16000
SMALL = AudioVAEConfig(latent_channels=4, hidden=32, num_res_blocks=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convs and FFTs are much faster single-threaded on a shared, busy CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def _vae(config: AudioVAEConfig = SMALL, seed: int = 0) -> AudioVAE:
    torch.manual_seed(seed)  # test-side seeding of the weight init only
    return AudioVAE(config).eval()


def _tone_clip(seed: int, seconds: float = 1.0) -> Clip:
    """Beeps of a random pitch with silent gaps, as the test's own tiny AV world."""
    g = torch.Generator().manual_seed(seed)
    freq = 200 + 1500 * float(torch.rand(1, generator=g))
    wave = _tone(freq, seconds, amp=0.3)
    gate = (torch.arange(wave.shape[0]) // 2000) % 2 == 0
    return Clip(frames=torch.zeros(1, 8, 8, 3), waveform=wave * gate, fps=24.0, sample_rate=SR, caption="beeps")


def _dominant_hz(wave: torch.Tensor) -> float:
    spec = torch.fft.rfft(wave.double() * torch.hann_window(wave.shape[-1], dtype=torch.float64))
    return float(spec.abs().argmax()) * SR / wave.shape[-1]


# ---------------------------------------------------------------------------------------------
# Mel front end
# ---------------------------------------------------------------------------------------------


def test_slaney_mel_scale_is_linear_below_1khz_and_logarithmic_above():
    # Slaney: 200/3 Hz per mel up to 1 kHz (15 mel), then 27 mel per factor 6.4 in frequency
    hz = torch.tensor([0.0, 200 / 3, 1000.0, 6400.0, 6400.0 * 6.4])
    torch.testing.assert_close(hz_to_mel(hz), torch.tensor([0.0, 1.0, 15.0, 42.0, 69.0], dtype=torch.float64))
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz.double())


def test_filterbank_matches_torchaudio_slaney_filters():
    ta_f = pytest.importorskip("torchaudio.functional")
    c = MelConfig()
    ours = mel_filterbank(c)
    ref = ta_f.melscale_fbanks(
        c.n_freqs, c.f_min, c.f_max, c.n_mels, c.sample_rate, norm="slaney", mel_scale="slaney"
    ).T  # [n_mels, n_freqs]
    assert ours.shape == (80, 513)
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4


def test_log_mel_matches_torchaudio_melspectrogram_with_identical_settings():
    ta_t = pytest.importorskip("torchaudio.transforms")
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0)) * 0.2
    ours = LogMel().mel(wave)
    ref_tf = ta_t.MelSpectrogram(
        sample_rate=SR, n_fft=1024, hop_length=256, f_min=0.0, f_max=8000.0, n_mels=80, power=1.0,
        center=False, norm="slaney", mel_scale="slaney",
    )
    ref = ref_tf(F.pad(wave[:, None], (384, 384), mode="reflect")[:, 0])  # the documented framing
    assert ours.shape == ref.shape == (2, 80, 8000 // 256)
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4


def _mel_centres(c: MelConfig) -> torch.Tensor:
    return mel_to_hz(torch.linspace(float(hz_to_mel(c.f_min)), float(hz_to_mel(c.f_max)), c.n_mels + 2))[1:-1]


@pytest.mark.parametrize("k", [5, 20, 45, 70])
def test_a_pure_tone_at_a_filter_centre_peaks_in_that_mel_bin(k):
    c = MelConfig()
    freq = float(_mel_centres(c)[k])  # the neighbouring triangles are zero exactly here
    mel = LogMel(c)(_tone(freq))[0]  # [80, N]
    assert int(mel.mean(1).argmax()) == k
    assert mel.max() > -1 and mel.min() >= c.log_min  # loud tone, floor respected


def test_frame_count_is_samples_over_hop_and_frame_j_is_centred_on_j_hop_plus_half_hop():
    lm = LogMel()
    for s in (512, 1000, 16000, 16255):
        assert lm(torch.zeros(s)).shape == (1, 80, s // 256)
    click = torch.zeros(16000)
    click[256 * 10 + 128] = 1.0
    energy = lm.mel(click)[0].sum(0)
    assert int(energy.argmax()) == 10
    # a silent waveform sits exactly on the log floor
    assert torch.all(lm(torch.zeros(4096)) == MelConfig().log_min)


@pytest.mark.parametrize("freq", [440.0, 1500.0])
def test_griffin_lim_rebuilds_a_pure_tone_with_the_right_dominant_frequency(freq):
    lm = LogMel()
    log_mel = lm(_tone(freq, seconds=2.0))
    wave = lm.griffin_lim(log_mel, n_iter=32)
    assert wave.shape == (1, log_mel.shape[-1] * 256)
    # a mel spectrogram only pins a tone down to about the spacing of the filter centres there
    centres = _mel_centres(MelConfig())
    k = int((centres - freq).abs().argmin())
    assert abs(_dominant_hz(wave[0]) - freq) < float(centres[k + 1] - centres[k])
    # GL converged: spectral convergence of the re-analysed mel (zero phase start: ~0.9)
    target = torch.pow(10.0, log_mel)
    assert float((lm.mel(wave) - target).norm() / target.norm()) < 0.3


def test_griffin_lim_with_a_generator_is_reproducible():
    lm = LogMel()
    log_mel = lm(_tone(700.0, 0.5))
    a = lm.griffin_lim(log_mel, n_iter=4, generator=torch.Generator().manual_seed(1))
    b = lm.griffin_lim(log_mel, n_iter=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Audio VAE geometry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 300, 511, 768, 1280, 16000, 32000, 40000, 80000])
def test_latent_count_follows_the_timeline_rounding_and_decoded_mel_has_two_frames_per_latent(samples):
    vae = _vae()
    t_a = TimelineConfig().audio_latent_frames(samples / SR)  # the project's timeline rule
    assert vae.latent_frames(samples) == t_a
    with torch.no_grad():
        latent = vae.encode(torch.zeros(2, samples))
        assert latent.shape == (2, SMALL.latent_channels, t_a)
        assert vae.decode_mel(latent).shape == (2, 80, 2 * t_a)


@pytest.mark.parametrize("samples", [300, 16000, 16300])
def test_decode_returns_exactly_512_samples_per_latent(samples):
    vae = _vae()
    with torch.no_grad():
        latent = vae.encode(0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(0)))
        wave = vae.decode(latent)
    assert wave.shape == (1, latent.shape[-1] * 512)
    assert 0 <= samples - wave.shape[-1] < 512 or samples < 512  # whole latents: at most one partial dropped


def test_default_config_has_the_mmaudio_16k_rates_and_eight_channels():
    vae = AudioVAE()
    assert (vae.sample_rate, vae.hop, vae.samples_per_latent, vae.latent_rate) == (16000, 256, 512, 31.25)
    assert vae.latent_channels == 8
    assert 2e5 < sum(p.numel() for p in vae.parameters()) < 2.5e6


# ---------------------------------------------------------------------------------------------
# Sampling, normalisation, persistence
# ---------------------------------------------------------------------------------------------


def test_audio_encode_is_deterministic_and_sampling_is_reproducible():
    vae = _vae()
    wave = _tone(500.0, 0.5)[None]
    with torch.no_grad():
        assert torch.equal(vae.encode(wave), vae.encode(wave))
        s1 = vae.encode(wave, sample=True, generator=torch.Generator().manual_seed(3))
        s2 = vae.encode(wave, sample=True, generator=torch.Generator().manual_seed(3))
        s3 = vae.encode(wave, sample=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(s1, s2) and not torch.allclose(s1, s3)
    with pytest.raises(ValueError, match="generator"):
        vae.encode(wave, sample=True)


def test_audio_latent_normalisation_round_trips():
    vae = _vae()
    wave = _tone(900.0, 0.5)[None]
    mean, std = torch.linspace(-1, 1, SMALL.latent_channels), torch.linspace(0.5, 2, SMALL.latent_channels)
    with torch.no_grad():
        raw, _ = vae.posterior(wave)
        vae.set_latent_stats(mean, std)
        latent = vae.encode(wave)
        torch.testing.assert_close(latent, (raw - mean[None, :, None]) / std[None, :, None])
        torch.testing.assert_close(vae.denormalize(latent), raw)
        torch.testing.assert_close(vae.decode_mel(latent), vae.decode_mel_raw(raw).clamp_min(-5.0))


def test_audio_save_load_round_trip_is_bit_identical_and_keeps_the_config(tmp_path):
    config = AudioVAEConfig(latent_channels=3, hidden=16, num_res_blocks=1, mel=MelConfig(n_mels=64))
    vae = _vae(config, seed=2)
    vae.set_latent_stats(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    path = tmp_path / "audio_vae.safetensors"
    save_vae(path, vae)
    loaded = load_vae(path)
    assert isinstance(loaded, AudioVAE) and loaded.config == config
    wave = _tone(600.0, 0.25)[None]
    with torch.no_grad():
        latent = vae.encode(wave)
        assert torch.equal(latent, loaded.encode(wave))
        assert torch.equal(vae.decode(latent), loaded.decode(latent))


def test_audio_config_validates_and_round_trips_with_its_nested_mel_config():
    cfg = AudioVAEConfig(latent_channels=20, mel=MelConfig(f_max=7600.0))
    assert AudioVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="kernel"):
        AudioVAEConfig(kernel=4)
    with pytest.raises(ValueError, match="f_max"):
        MelConfig(f_max=9000.0)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


def test_stereo_input_is_rejected_with_a_downmix_hint_and_comfy_mono_is_accepted():
    vae = _vae()
    wave = _tone(440.0, 0.25)
    with pytest.raises(ValueError, match="Downmix"):
        vae.encode(torch.stack([wave, wave])[None])  # [B, 2, S]
    with torch.no_grad():
        assert torch.equal(vae.encode(wave[None, None]), vae.encode(wave[None]))  # [B, 1, S] == [B, S]
    with pytest.raises(TypeError, match="floating point"):
        vae.encode(torch.zeros(1, 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="empty"):
        vae.encode(torch.zeros(1, 0))
    with pytest.raises(ValueError, match=r"\[B, 4, T_a\]"):
        vae.decode_mel(torch.zeros(1, 5, 3))


def test_training_on_clips_with_the_wrong_sample_rate_fails_clearly():
    clip = _tone_clip(0)
    clip.sample_rate = 22050
    with pytest.raises(ValueError, match="sample_rate=22050.*Resample"):
        train_audio_vae(SMALL, [clip], steps=1, batch_size=1)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def test_a_few_audio_training_steps_reduce_the_log_mel_loss_and_set_latent_stats():
    clips = [_tone_clip(s) for s in range(6)]
    torch.manual_seed(0)
    before = reconstruction_report(AudioVAE(SMALL), clips, n=2)
    torch.manual_seed(0)
    vae, history = train_audio_vae(SMALL, clips, steps=40, batch_size=4, seconds=0.5, lr=3e-3, log_every=0)
    first = sum(h["rec"] for h in history[:5]) / 5
    last = sum(h["rec"] for h in history[-5:]) / 5
    assert last < 0.6 * first
    assert not torch.equal(vae.latent_mean, torch.zeros(SMALL.latent_channels))
    after = reconstruction_report(vae, clips, n=2)
    assert after["mel_l1"] < 0.6 * before["mel_l1"]
    assert after["mel_snr_db"] > before["mel_snr_db"]
    assert {"gl_mel_l1", "latent_std", "clips"} <= after.keys()
