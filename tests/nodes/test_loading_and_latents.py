"""Loader, text, empty latent, encode / decode, combine / split on the tiny random bundle."""

from __future__ import annotations

import math

import pytest
import torch

from harmony_core.config import TimelineConfig
from harmony_core.data.synthetic import WorldConfig, generate_clip

MODEL_NAME = "test-tiny.safetensors"


def test_the_loader_lists_the_shipped_model_first_and_the_test_model(nodes, model_dir):
    from importlib import import_module

    loader = import_module(nodes.__name__ + "._comfy.loader")
    names = loader.list_models()
    assert names[0] == "harmony-tiny.safetensors" and MODEL_NAME in names


def test_the_loader_returns_a_native_model_with_the_bundle_parts(nodes, loaded):
    model, text, video_vae, audio_vae = loaded
    assert type(model.model).__name__ == "HarmonyAVModel"
    assert model.model.diffusion_model.dit.config.name == "test-tiny"
    assert model.get_model_object("model_sampling").shift == 5.0  # the paper's shift
    assert video_vae.engine is audio_vae.engine is text.engine


def test_a_file_that_is_not_a_harmony_checkpoint_is_rejected_with_the_node_name(nodes, model_dir):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(model_dir / "not-harmony.safetensors"), metadata={"format": "other"})
    with pytest.raises(ValueError, match=r"^Harmony Model Loader: 'not-harmony.safetensors' is not a Harmony"):
        nodes.HarmonyModelLoader.execute("not-harmony.safetensors", "default")


def test_an_ovi_checkpoint_is_recognised_from_its_keys_and_explained(nodes, model_dir):
    from safetensors.torch import save_file

    save_file({"video_model.blocks.0.modulation.modulation": torch.zeros(1, 6, 4),
               "video_model.patch_embedding.weight": torch.zeros(4, 4, 1, 2, 2)},
              str(model_dir / "ovi-like.safetensors"))
    with pytest.raises(ValueError, match="Harmony Model Loader: 'ovi-like.safetensors' has the 'ovi' key layout"):
        nodes.HarmonyModelLoader.execute("ovi-like.safetensors", "default")


def test_an_unknown_model_name_says_where_it_looked(nodes, model_dir):
    with pytest.raises(FileNotFoundError, match="Harmony Model Loader: model_name='nope.safetensors' was not found"):
        nodes.HarmonyModelLoader.execute("nope.safetensors", "default")


def test_text_encode_carries_prompt_caption_and_transcript(nodes, loaded):
    cond = nodes.HarmonyTextEncode.execute("a drum", "", "hello there", text_encoders=loaded[1]).args[0]
    tensor, extra = cond[0]
    payload = extra["harmony_text"]
    assert tensor.shape[0] == 1 and tensor.shape[2] == 384
    # an empty caption means "the video prompt": same text, same encoding
    assert torch.equal(payload["a_context"], tensor)
    assert payload["speech"] is not None and bool(payload["speech_mask"].any())
    silent = nodes.HarmonyTextEncode.execute("a drum", "", "", text_encoders=loaded[1]).args[0]
    assert not bool(silent[0][1]["harmony_text"]["speech_mask"].any())


def test_text_encode_without_any_encoder_explains_what_to_connect(nodes):
    with pytest.raises(ValueError, match="Harmony Text Encode: connect text_encoders"):
        nodes.HarmonyTextEncode.execute("a drum", "", "")


def test_text_encode_uses_a_core_clip_for_prompt_and_caption(nodes, loaded):
    class FakeClip:  # the CLIP interface CLIPTextEncode uses
        def tokenize(self, text):
            return text

        def encode_from_tokens(self, tokens):
            return torch.full((1, 4, 384), float(len(tokens)))

    cond = nodes.HarmonyTextEncode.execute("abc", "abcdef", "hi", text_encoders=loaded[1], clip=FakeClip()).args[0]
    tensor, extra = cond[0]
    assert torch.equal(tensor, torch.full((1, 4, 384), 3.0))
    assert torch.equal(extra["harmony_text"]["a_context"], torch.full((1, 4, 384), 6.0))
    assert extra["harmony_text"]["speech"] is not None  # the transcript still uses the bundle's encoder


def test_the_empty_latent_derives_the_audio_length_from_the_clip_duration(nodes, loaded):
    _, _, vv, av = loaded
    lat = nodes.HarmonyEmptyAVLatent.execute(vv, av, 48, 32, 2.0, 0, 24.0, 2).args[0]
    v, a = lat["samples"].unbind()
    frames = 49  # 2 s at 24 fps -> nearest 1 + 4k
    assert v.shape == (2, 4, 1 + (frames - 1) // 4, 32 // 4, 48 // 4)
    seconds = frames / 24
    assert a.shape[:2] == (2, 6) and abs(a.shape[2] / 31.25 - seconds) < 1 / 31.25  # 16 kHz / 512 per latent
    assert a.shape[2] == TimelineConfig().audio_latent_frames(seconds)  # the timeline's own rule
    assert lat["fps"] == 24.0 and lat["sample_rate"] == 16000 and "noise_mask" not in lat
    assert not v.any() and not a.any()


def test_the_empty_latent_rejects_bad_geometry_naming_value_and_fix(nodes, loaded):
    _, _, vv, av = loaded
    with pytest.raises(ValueError, match=r"Harmony Empty AV Latent: 36x32 .* multiples of 8 .* Use e\.g\. 32x32"):
        nodes.HarmonyEmptyAVLatent.execute(vv, av, 36, 32, 1.0, 0, 24.0, 1)
    with pytest.raises(ValueError, match=r"Harmony Empty AV Latent: frames=10 .* 1 \+ 4\*k"):
        nodes.HarmonyEmptyAVLatent.execute(vv, av, 32, 32, 0.0, 10, 24.0, 1)
    with pytest.raises(ValueError, match=r"Harmony Empty AV Latent: fps=30 .* Set fps to 24"):
        nodes.HarmonyEmptyAVLatent.execute(vv, av, 32, 32, 1.0, 0, 30.0, 1)


def test_the_vaes_are_type_checked_with_a_readable_message(nodes, loaded):
    _, _, vv, av = loaded
    with pytest.raises(TypeError, match="Harmony Empty AV Latent: the video_vae input is not a video VAE"):
        nodes.HarmonyEmptyAVLatent.execute(av, av, 32, 32, 1.0, 0, 24.0, 1)


def test_video_encode_fits_frames_to_the_clip_and_decode_restores_the_layout(nodes, loaded, av_latent):
    _, _, vv, _ = loaded
    clip = generate_clip(3, family="ball", seconds=1.0, config=WorldConfig(fps=12.0, height=40, width=40))
    lat, fitted = nodes.HarmonyVAEEncodeVideo.execute(clip.frames, vv, 12.0, match_latent=av_latent).args
    assert fitted.shape == (9, 32, 32, 3)  # 12 fps -> 24 fps, 40x40 -> 32x32, trimmed to the clip's 9 frames
    # nearest-frame resampling from 12 to 24 fps repeats every frame twice (frames 0,0,1,1,2,...)
    assert torch.equal(fitted[0], fitted[1]) and not torch.equal(fitted[1], fitted[2])
    assert lat["samples"].shape == av_latent["samples"].unbind()[0].shape and lat["fps"] == 24.0
    images, fps = nodes.HarmonyVAEDecodeVideo.execute(av_latent, vv).args
    assert images.shape == (9, 32, 32, 3) and fps == 24.0
    assert images.dtype == torch.float32 and float(images.min()) >= 0 and float(images.max()) <= 1


def test_video_encode_without_a_match_rejects_odd_sizes(nodes, loaded):
    with pytest.raises(ValueError, match="Harmony VAE Encode Video: 30x30 .* multiples of 8"):
        nodes.HarmonyVAEEncodeVideo.execute(torch.rand(9, 30, 30, 3), loaded[2], 24.0)


def test_audio_encode_converts_any_rate_and_channels_and_fits_the_clip(nodes, loaded, av_latent):
    _, _, _, av = loaded
    t = torch.arange(44100 * 2) / 44100
    stereo = torch.stack([torch.sin(2 * math.pi * 440 * t), torch.sin(2 * math.pi * 660 * t)])[None] * 0.5
    lat, fitted = nodes.HarmonyVAEEncodeAudio.execute({"waveform": stereo, "sample_rate": 44100}, av,
                                                      match_latent=av_latent).args
    t_a = av_latent["samples"].unbind()[1].shape[2]
    assert lat["samples"].shape == (1, 6, t_a)
    assert fitted["sample_rate"] == 16000 and fitted["waveform"].shape == (1, 1, t_a * 512)
    # resampled, not rejected: the 440 Hz + 660 Hz mix keeps its energy after 44.1 -> 16 kHz
    assert 0.3 < float(fitted["waveform"].abs().max()) <= 1.0
    with pytest.raises(ValueError, match="Harmony VAE Encode Audio: audio is empty"):
        nodes.HarmonyVAEEncodeAudio.execute(None, av)


def test_audio_decode_returns_comfyui_audio_that_save_video_accepts(nodes, loaded, av_latent):
    audio = nodes.HarmonyVAEDecodeAudio.execute(av_latent, loaded[3]).args[0]
    wave = audio["waveform"]
    assert wave.dim() == 3 and wave.shape[:2] == (1, 1) and wave.dtype == torch.float32
    assert bool(torch.isfinite(wave).all()) and float(wave.abs().max()) <= 1.0
    assert audio["sample_rate"] == 16000


def test_combine_and_split_round_trip_streams_and_masks(nodes, av_latent):
    video, audio = nodes.HarmonyAVLatentSplit.execute(av_latent).args
    assert "noise_mask" not in video and video["fps"] == 24.0 and audio["sample_rate"] == 16000
    audio["noise_mask"] = torch.zeros_like(audio["samples"])
    av = nodes.HarmonyAVLatentCombine.execute(video, audio).args[0]
    v_mask, a_mask = av["noise_mask"].unbind()
    assert bool((v_mask == 1).all()) and bool((a_mask == 0).all())
    back_v, back_a = nodes.HarmonyAVLatentSplit.execute(av).args
    assert torch.equal(back_v["samples"], video["samples"]) and torch.equal(back_a["noise_mask"], a_mask)
    with pytest.raises(ValueError, match="Harmony AV Latent Split: expected an audio\\+video latent"):
        nodes.HarmonyAVLatentSplit.execute(video)


@pytest.mark.parametrize("weight_dtype", ["bf16", "fp8_e4m3fn"])
def test_narrow_weight_dtypes_store_narrow_weights_and_compute_in_the_cast_dtype(nodes, loaded, positive, av_latent,
                                                                                  weight_dtype):
    model, _, vv, av = nodes.HarmonyModelLoader.execute(MODEL_NAME, weight_dtype).args
    dit = model.model.diffusion_model.dit
    stored = {"bf16": torch.bfloat16, "fp8_e4m3fn": torch.float8_e4m3fn}[weight_dtype]
    assert dit.video_model.blocks[0].self_attn.q.weight.dtype == stored
    assert dit.compute_dtype == torch.float32  # a CPU computes narrow weights in float32
    run = [nodes.HarmonySampler.execute(m, positive, av_latent, vv, av, 0, 2, "euler", "simple", 3.0, 2.0, 1.0)
           .args[0]["samples"].unbind()[0] for m in (model, loaded[0])]
    assert bool(torch.isfinite(run[0]).all())
    # the same model, rounded weights: the videos agree closely (bf16) or roughly (fp8)
    corr = torch.corrcoef(torch.stack([run[0].flatten(), run[1].flatten()]))[0, 1]
    assert corr > (0.99 if weight_dtype == "bf16" else 0.8)
