"""MMAudio VAE + BigVGAN -> ComfyUI file: EDM2 normalisation, weight-norm folding, mel buffers, file
layout, errors and the CLI, on small synthetic state dicts with MMAudio's key names.

The optional tests at the end (``COMFYUI_PATH=/path/to/ComfyUI``) compare against ComfyUI 0.26's own
``AudioAutoencoder``: key set and shapes at full size (built on ``meta``), and outputs of small
ComfyUI VAE / vocoder modules loaded from the converted state.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import parametrizations

from harmony_core.io.mmaudio_comfy import (
    COMFY_DETECTION_KEY,
    comfy_mmaudio_state,
    convert_mmaudio_for_comfy,
    fold_weight_norm,
    main,
    mel_tensors,
    normalise_edm2_conv,
)

# ---------------------------------------------------------------------------------------------
# Synthetic MMAudio-layout checkpoints
# ---------------------------------------------------------------------------------------------


def edm2_reference(w: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """EDM2 MPConv weight, channel by channel in float64: unit RMS with eps (Eq. 66), then / sqrt(fan_in)."""
    w = w.detach().double()
    fan_in = w[0].numel()
    out = torch.empty_like(w)
    for o in range(w.shape[0]):
        rms = math.sqrt(float((w[o] ** 2).sum()) / fan_in)
        out[o] = w[o] / (eps + rms) / math.sqrt(fan_in)
    return out


def tiny_vae_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """MMAudio VAE key names (80 mels, 20 latent channels) at width 6, raw weights at a non-unit scale."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "encoder.conv_in.weight": (6, 80, 3),
        "encoder.down.0.block.0.conv1.weight": (6, 6, 3),
        "encoder.mid.attn_1.qkv.weight": (18, 6, 1),
        "encoder.conv_out.weight": (40, 6, 3),
        "decoder.conv_in.weight": (6, 20, 3),
        "decoder.conv_out.weight": (80, 6, 3),
    }
    state = {k: 3.0 * torch.randn(s, generator=g) for k, s in shapes.items()}
    state["data_mean"] = torch.randn(1, 80, 1, generator=g)
    state["data_std"] = torch.rand(1, 80, 1, generator=g) + 0.5
    state["encoder.learnable_gain"] = torch.tensor(0.25)
    state["decoder.learnable_gain"] = torch.tensor(-0.5)
    return state


def randomise(module: nn.Module, g: torch.Generator) -> nn.Module:
    """Weights N(0, 1 / fan_in), snake parameters small: from an explicit generator, never the global RNG."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
    return module


class TinyBigVGAN(nn.Module):
    """BigVGAN's module names (conv_pre, ups.i.0, resblocks, activation_post, conv_post) with weight norm."""

    def __init__(self, old_style: bool, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        if old_style:  # torch.nn.utils.weight_norm: 'weight_g' / 'weight_v', as BigVGAN's training code saved

            def wn(m):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    return torch.nn.utils.weight_norm(randomise(m, g))
        else:  # parametrisations, as MMAudio's current models.py builds them

            def wn(m):
                return parametrizations.weight_norm(randomise(m, g))

        self.conv_pre = wn(nn.Conv1d(80, 8, 7, padding=3))
        self.ups = nn.ModuleList([nn.ModuleList([wn(nn.ConvTranspose1d(8, 4, 4, 2, padding=1))])])
        block = nn.Module()
        block.convs1 = nn.ModuleList([wn(nn.Conv1d(4, 4, 3, padding=1))])
        self.resblocks = nn.ModuleList([block])
        act = nn.Module()
        act.act = nn.Module()
        act.act.alpha = nn.Parameter(torch.randn(4, generator=g))
        act.act.beta = nn.Parameter(torch.randn(4, generator=g))
        act.upsample = nn.Module()
        act.upsample.register_buffer("filter", torch.rand(1, 1, 12, generator=g))
        act.downsample = nn.Module()
        act.downsample.lowpass = nn.Module()
        act.downsample.lowpass.register_buffer("filter", torch.rand(1, 1, 12, generator=g))
        self.activation_post = act
        self.conv_post = wn(nn.Conv1d(4, 1, 7, padding=3))
        with torch.no_grad():  # magnitudes away from |v| so folding is not the identity
            for m in self.modules():
                for name in ("weight_g", "original0"):
                    p = getattr(m, name, None)
                    if isinstance(p, torch.Tensor):
                        p.mul_(torch.rand(p.shape, generator=g) + 0.5)

    def folded(self) -> dict[str, torch.Tensor]:
        """What each weight-normed conv computes with, from torch's own weight-norm code."""
        convs = {
            "conv_pre": self.conv_pre,
            "ups.0.0": self.ups[0][0],
            "resblocks.0.convs1.0": self.resblocks[0].convs1[0],
            "conv_post": self.conv_post,
        }
        with torch.no_grad():
            for m in convs.values():  # the old-style hook recomputes 'weight' only before a forward
                m(torch.zeros(1, m.in_channels, 8))
        return {f"{name}.weight": m.weight.detach().clone() for name, m in convs.items()}


@pytest.fixture
def ckpts(tmp_path):
    """v1-16.pth and best_netG.pt ({'generator': ...}, old-style weight norm) in tmp_path."""
    vae, voc = tiny_vae_state(), TinyBigVGAN(old_style=True)
    torch.save(vae, tmp_path / "v1-16.pth")
    torch.save({"generator": voc.state_dict()}, tmp_path / "best_netG.pt")
    return tmp_path, vae, voc


# ---------------------------------------------------------------------------------------------
# Pure pieces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 80, 3), (18, 6, 1), (40, 6, 3)])
def test_edm2_normalisation_matches_the_mpconv_formula_channel_by_channel(shape):
    g = torch.Generator().manual_seed(1)
    w = 5.0 * torch.randn(shape, generator=g)
    w[0] *= 1e-3  # a nearly dead channel: eps must keep it finite and small, not blow it up to unit norm
    got = normalise_edm2_conv(w)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), edm2_reference(w), rtol=2e-6, atol=1e-9)
    norms = torch.linalg.vector_norm(got[1:].double(), dim=(1, 2))
    fan_in = shape[1] * shape[2]
    torch.testing.assert_close(norms, torch.full_like(norms, 1.0), rtol=0, atol=2e-4 * math.sqrt(fan_in))


def test_edm2_normalisation_rejects_a_non_weight():
    with pytest.raises(ValueError, match="conv weight"):
        normalise_edm2_conv(torch.ones(5))


@pytest.mark.parametrize("old_style", [True, False], ids=["weight_g_v", "parametrizations"])
def test_weight_norm_folding_equals_torch_weight_norm_in_both_spellings(old_style):
    voc = TinyBigVGAN(old_style=old_style, seed=2)
    state = voc.state_dict()
    assert any(k.endswith("weight_g" if old_style else "original0") for k in state)
    folded = fold_weight_norm(state)
    for key, ref in voc.folded().items():
        torch.testing.assert_close(folded[key], ref, rtol=1e-6, atol=1e-7)
    assert not any("weight_g" in k or "weight_v" in k or "parametrizations" in k for k in folded)
    torch.testing.assert_close(folded["conv_pre.bias"], state["conv_pre.bias"], rtol=0, atol=0)
    assert len(folded) == len(state) - 4  # four pairs became four weights


def test_weight_norm_folding_follows_the_magnitude_shape_for_dim_1_and_dim_none():
    for dim in (1, None):
        conv = parametrizations.weight_norm(nn.Conv1d(3, 5, 2), dim=dim)
        folded = fold_weight_norm({"c." + k: v for k, v in conv.state_dict().items()})
        torch.testing.assert_close(folded["c.weight"], conv.weight.detach(), rtol=1e-6, atol=1e-7)


def test_weight_norm_folding_refuses_a_half_pair():
    state = TinyBigVGAN(old_style=True).state_dict()
    del state["conv_post.weight_v"]
    with pytest.raises(ValueError, match="conv_post.weight_g.*conv_post.weight_v"):
        fold_weight_norm(state)


def test_mel_basis_is_torchaudio_slaney_filterbank_in_comfy_orientation():
    taf = pytest.importorskip("torchaudio.functional")
    mel = mel_tensors()
    basis = mel["mel_converter.mel_basis"]
    # ComfyUI's MelConverter: mel_basis is [num_mels, 1 + n_fft // 2] and is applied as mel_basis @ |STFT|.
    assert basis.shape == (80, 1024 // 2 + 1) and basis.dtype == torch.float32
    ref = taf.melscale_fbanks(513, 0.0, 8000.0, 80, 16000, norm="slaney", mel_scale="slaney").T
    torch.testing.assert_close(basis, ref, rtol=1e-4, atol=2e-7)
    n = torch.arange(1024, dtype=torch.float64)
    periodic_hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / 1024)
    torch.testing.assert_close(mel["mel_converter.hann_window"].double(), periodic_hann, rtol=0, atol=5e-7)


# ---------------------------------------------------------------------------------------------
# The converted file
# ---------------------------------------------------------------------------------------------


def test_converted_file_holds_comfy_prefixed_keys_with_normalised_and_folded_weights(ckpts):
    tmp, vae, voc = ckpts
    out = tmp / "mmaudio.safetensors"
    counts = convert_mmaudio_for_comfy(tmp / "v1-16.pth", tmp / "best_netG.pt", out)
    sd = load_file(out)
    assert counts == {
        "vae_tensors": len(vae),
        "vocoder_tensors": len(voc.state_dict()) - 4,
        "folded_weight_norms": 4,
        "normalised_edm2_convs": 6,
    }
    assert all(k.startswith(("vae.", "vocoder.", "mel_converter.")) for k in sd)
    assert COMFY_DETECTION_KEY in sd
    assert len(sd) == counts["vae_tensors"] + counts["vocoder_tensors"] + 2
    for key, raw in vae.items():
        if key.endswith(".weight"):
            torch.testing.assert_close(sd["vae." + key].double(), edm2_reference(raw), rtol=2e-6, atol=1e-9)
        else:  # mel statistics and learnable gains are copied as they are
            torch.testing.assert_close(sd["vae." + key], raw, rtol=0, atol=0)
    for key, ref in voc.folded().items():
        torch.testing.assert_close(sd["vocoder." + key], ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sd[COMFY_DETECTION_KEY], voc.activation_post.downsample.lowpass.filter, rtol=0, atol=0)
    with safe_open(os.fspath(out), framework="pt") as f:
        assert f.metadata()["source_vae"] == "v1-16.pth"


def test_fp16_stores_learned_weights_in_half_and_keeps_fixed_buffers_float32(ckpts):
    tmp, _, _ = ckpts
    out = tmp / "half.safetensors"
    convert_mmaudio_for_comfy(tmp / "v1-16.pth", tmp / "best_netG.pt", out, dtype=torch.float16)
    sd = load_file(out)
    assert sd["vae.encoder.conv_in.weight"].dtype == torch.float16
    assert sd["vocoder.conv_pre.weight"].dtype == torch.float16
    for key in ("mel_converter.mel_basis", "mel_converter.hann_window", "vae.data_mean", COMFY_DETECTION_KEY):
        assert sd[key].dtype == torch.float32, key


def test_bare_and_wrapped_vocoder_states_in_either_spelling_give_the_same_file(tmp_path):
    torch.save(tiny_vae_state(), tmp_path / "v.pth")
    old, new = TinyBigVGAN(old_style=True, seed=3), TinyBigVGAN(old_style=False, seed=3)
    torch.save({"generator": old.state_dict()}, tmp_path / "wrapped.pt")
    torch.save(new.state_dict(), tmp_path / "bare.pt")
    convert_mmaudio_for_comfy(tmp_path / "v.pth", tmp_path / "wrapped.pt", tmp_path / "a.safetensors")
    convert_mmaudio_for_comfy(tmp_path / "v.pth", tmp_path / "bare.pt", tmp_path / "b.safetensors")
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_a_file_that_is_not_the_vae_is_refused_with_the_missing_keys(ckpts):
    tmp, _, _ = ckpts
    torch.save({"model.weight": torch.ones(2, 2)}, tmp / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth.*not MMAudio's VAE.*encoder\.conv_in\.weight.*model\.weight"):
        convert_mmaudio_for_comfy(tmp / "other.pth", tmp / "best_netG.pt", tmp / "o.safetensors")
    assert not (tmp / "o.safetensors").exists()


def test_swapped_files_are_named_as_swapped(ckpts):
    tmp, _, _ = ckpts
    with pytest.raises(ValueError, match="pass v1-16.pth first"):
        convert_mmaudio_for_comfy(tmp / "best_netG.pt", tmp / "v1-16.pth", tmp / "o.safetensors")


def test_the_44k_vae_is_refused_because_comfy_only_builds_16k(tmp_path, ckpts):
    tmp, _, _ = ckpts
    vae = tiny_vae_state()
    vae["encoder.conv_in.weight"] = torch.randn(6, 128, 3)
    vae["decoder.conv_out.weight"] = torch.randn(128, 6, 3)
    torch.save(vae, tmp / "v1-44.pth")
    with pytest.raises(ValueError, match=r"128 mel bins.*v1-44.*expected 80"):
        convert_mmaudio_for_comfy(tmp / "v1-44.pth", tmp / "best_netG.pt", tmp / "o.safetensors")


def test_a_vocoder_without_the_detection_filter_is_refused(ckpts):
    tmp, _, voc = ckpts
    state = voc.state_dict()
    del state["activation_post.downsample.lowpass.filter"]
    torch.save({"generator": state}, tmp / "g.pt")
    with pytest.raises(ValueError, match=r"g\.pt.*activation_post\.downsample\.lowpass\.filter.*would not recognise"):
        convert_mmaudio_for_comfy(tmp / "v1-16.pth", tmp / "g.pt", tmp / "o.safetensors")


def test_unreadable_missing_and_misnamed_files_fail_up_front(ckpts):
    tmp, _, _ = ckpts
    (tmp / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth.*could not be read"):
        convert_mmaudio_for_comfy(tmp / "junk.pth", tmp / "best_netG.pt", tmp / "o.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        convert_mmaudio_for_comfy(tmp / "nope.pth", tmp / "best_netG.pt", tmp / "o.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        convert_mmaudio_for_comfy(tmp / "v1-16.pth", tmp / "best_netG.pt", tmp / "o.pt")
    with pytest.raises(ValueError, match="dtype"):
        convert_mmaudio_for_comfy(tmp / "v1-16.pth", tmp / "best_netG.pt", tmp / "o.safetensors", dtype=torch.int8)


def test_cli_writes_an_fp16_file_and_reports_errors_with_status_2(ckpts, capsys):
    tmp, _, _ = ckpts
    out = tmp / "cli.safetensors"
    assert main([str(tmp / "v1-16.pth"), str(tmp / "best_netG.pt"), str(out), "--dtype", "fp16"]) == 0
    assert load_file(out)["vocoder.conv_post.weight"].dtype == torch.float16
    assert "folded_weight_norms=4" in capsys.readouterr().out
    assert main([str(tmp / "best_netG.pt"), str(tmp / "v1-16.pth"), str(tmp / "x.safetensors")]) == 2
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Against ComfyUI 0.26 itself (optional)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comfy_mmaudio():
    """ComfyUI's MMAudio modules (``AudioAutoencoder``, ``VAE``, ``VAE_16k``, ``BigVGANVocoder``), CPU mode."""
    path = os.environ.get("COMFYUI_PATH")
    if not path or not os.path.isdir(os.path.join(path, "comfy")):
        pytest.skip("set COMFYUI_PATH to a ComfyUI checkout to compare with its AudioAutoencoder")
    if path not in sys.path:
        sys.path.append(path)
    from comfy.cli_args import args

    args.cpu = True
    from comfy.ldm.mmaudio.vae import autoencoder, bigvgan, vae

    return SimpleNamespace(
        AudioAutoencoder=autoencoder.AudioAutoencoder,
        VAE=vae.VAE,
        VAE_16k=vae.VAE_16k,
        BigVGANVocoder=bigvgan.BigVGANVocoder,
    )


def _weight_norm_convs(module: nn.Module) -> nn.Module:
    """Give every conv torch's weight-norm parametrisation, as MMAudio's BigVGAN has."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            parametrizations.weight_norm(m)
    return module


def test_output_keys_and_shapes_equal_comfy_audio_autoencoder_at_full_size(comfy_mmaudio):
    with torch.device("meta"):
        comfy = comfy_mmaudio.AudioAutoencoder(mode="16k")
        # MMAudio's VAE has ComfyUI's names with raw weights; its vocoder is ComfyUI's with weight norm.
        vae_src = comfy_mmaudio.VAE_16k().state_dict()
        voc_src = _weight_norm_convs(comfy_mmaudio.BigVGANVocoder(comfy.vocoder.h)).state_dict()
    state, counts = comfy_mmaudio_state(vae_src, voc_src)
    expected = {k: tuple(v.shape) for k, v in comfy.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert counts["normalised_edm2_convs"] == sum(1 for k in expected if k.startswith("vae.") and k.endswith(".weight"))
    assert counts["folded_weight_norms"] == sum(1 for k in voc_src if k.endswith("original0")) > 0


def test_small_comfy_modules_loaded_from_the_conversion_compute_what_mmaudio_computes(comfy_mmaudio):
    g = torch.Generator().manual_seed(4)

    class MPWeight(nn.Module):  # MPConv1D's forward-time normalisation, written from the EDM2 formula
        def forward(self, w):
            return edm2_reference(w).to(w.dtype)

    h = {
        "resblock": "1",
        "num_mels": 80,
        "upsample_rates": [2, 2],
        "upsample_kernel_sizes": [4, 4],
        "upsample_initial_channel": 16,
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3, 5]],
        "activation": "snakebeta",
        "snake_logscale": True,
    }
    # References: ComfyUI's modules computing the way MMAudio's do (normalisation / weight norm at forward time).
    ref_vae = randomise(comfy_mmaudio.VAE(data_dim=80, embed_dim=20, hidden_dim=8), g).eval()
    with torch.no_grad():
        for p in ref_vae.parameters():
            p.mul_(3.0)  # raw EDM2 weights are not unit-norm: normalisation must matter
    vae_src = {k: v.clone() for k, v in ref_vae.state_dict().items()}
    for m in ref_vae.modules():
        if isinstance(m, nn.Conv1d):
            torch.nn.utils.parametrize.register_parametrization(m, "weight", MPWeight())
    ref_voc = _weight_norm_convs(randomise(comfy_mmaudio.BigVGANVocoder(h), g)).eval()
    state, _ = comfy_mmaudio_state(vae_src, ref_voc.state_dict())

    vae = comfy_mmaudio.VAE(data_dim=80, embed_dim=20, hidden_dim=8).eval()
    voc = comfy_mmaudio.BigVGANVocoder(h).eval()
    vae.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("vae.")}, strict=True)
    voc.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("vocoder.")}, strict=True)
    z = torch.randn(1, 20, 8, generator=g)
    mel = torch.randn(1, 80, 16, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z), ref_vae.decode(z), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vae.encode(mel).mean, ref_vae.encode(mel).mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(voc(mel), ref_voc(mel), rtol=1e-4, atol=1e-6)
