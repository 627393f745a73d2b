"""MMAudio's 16 kHz VAE + BigVGAN vocoder -> one safetensors file that ComfyUI's core ``Load VAE`` reads.

MMAudio ships the two networks Ovi and Harmony decode audio with as two PyTorch pickles (the files
Ovi downloads from ``hkchengrex/MMAudio``):

* ``ext_weights/v1-16.pth``: the 16 kHz mel VAE, a bare state dict. Its convolutions are EDM2
  magnitude-preserving convolutions (``MPConv1D``, Karras et al. 2024, "Analyzing and Improving the
  Training Dynamics of Diffusion Models", Eq. 47 with the forced weight normalisation of Eq. 66): the
  stored weight is raw, and MMAudio's ``remove_weight_norm()`` replaces it once after loading by
  ``normalize(w) / sqrt(fan_in)``, where ``normalize`` divides each output channel by
  ``eps + |w_o| / sqrt(fan_in)`` (eps = 1e-4).
* ``ext_weights/best_netG.pt``: the BigVGAN vocoder (80 mel bins, 16 kHz), under ``["generator"]``.
  Its convolutions carry weight normalisation, ``w = g * v / |v|`` with the norm over every dim but
  ``dim`` (0 here), stored either old-style (``weight_g`` / ``weight_v``) or as torch
  parametrisations (``parametrizations.weight.original0`` / ``original1``).

ComfyUI 0.26 (``comfy/sd.py``) recognises the MMAudio VAE by the key
``vocoder.activation_post.downsample.lowpass.filter`` and builds ``AudioAutoencoder(mode="16k")``
(``comfy/ldm/mmaudio/vae/autoencoder.py``), whose convolutions are plain ``Conv1d`` /
``ConvTranspose1d`` and whose mel converter starts with an *empty* ``mel_basis`` buffer, so one file
must hold ``vae.*`` (normalisation applied), ``vocoder.*`` (weight norm folded) and
``mel_converter.mel_basis`` ``[80, 513]`` / ``mel_converter.hann_window`` ``[1024]``.

The learned weights are stored in the requested dtype; the fixed buffers (mel filters, Hann window,
the VAE's mel mean / std and BigVGAN's anti-aliasing filters) always stay float32, because ComfyUI
uses some of them without casting (``torch.matmul(mel_basis, spec)``) and fp16 would also round them.

Command line::

    python -m harmony_core.io.mmaudio_comfy v1-16.pth best_netG.pt mmaudio_16k_vae_bigvgan.safetensors
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..vae.mel import MelConfig, mel_filterbank
from .checkpoints import atomic_save_file

__all__ = [
    "COMFY_DETECTION_KEY",
    "MMAUDIO_16K_MEL",
    "normalise_edm2_conv",
    "weight_norm_weight",
    "fold_weight_norm",
    "mel_tensors",
    "comfy_mmaudio_state",
    "load_mmaudio_vae_state",
    "load_bigvgan_state",
    "convert_mmaudio_for_comfy",
    "main",
]

log = logging.getLogger(__name__)

COMFY_DETECTION_KEY = "vocoder.activation_post.downsample.lowpass.filter"
"""The key ``comfy/sd.py`` looks for to build the MMAudio 16k ``AudioAutoencoder``."""

MMAUDIO_16K_MEL = MelConfig(sample_rate=16000, n_fft=1024, hop=256, n_mels=80, f_min=0.0, f_max=8000.0)
"""The mel front end ComfyUI's ``AudioAutoencoder(mode="16k")`` builds (MMAudio's ``get_mel_converter('16k')``)."""

EDM2_EPS = 1e-4  # edm2_utils.normalize's default, used by MPConv1D.remove_weight_norm
LATENT_CHANNELS = 20  # VAE_16k embed_dim; ComfyUI sets latent_channels = 20 for this VAE
FORMAT = "mmaudio-16k-comfy/1"

_WEIGHT_NORM_SPELLINGS = (
    ("weight_g", "weight_v"),  # torch.nn.utils.weight_norm (BigVGAN's original training code)
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),  # nn.utils.parametrizations
)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
_SAFETENSORS_SUFFIXES = (".safetensors", ".sft")  # what comfy.utils.load_torch_file reads as safetensors
_VAE_FILE = "MMAudio's 16 kHz VAE (ext_weights/v1-16.pth from hkchengrex/MMAudio)"
_VOCODER_FILE = "MMAudio's BigVGAN 16 kHz vocoder (ext_weights/best_netG.pt from hkchengrex/MMAudio)"

# ---------------------------------------------------------------------------------------------
# Pure pieces
# ---------------------------------------------------------------------------------------------


def normalise_edm2_conv(weight: torch.Tensor, eps: float = EDM2_EPS) -> torch.Tensor:
    """The weight an EDM2 ``MPConv1D`` really convolves with, as MMAudio's ``remove_weight_norm`` bakes it.

    Each output channel ``w_o`` becomes ``w_o / (eps + |w_o| / sqrt(fan_in)) / sqrt(fan_in)``: unit RMS
    (EDM2 Eq. 66, forced weight normalisation) then ``1 / sqrt(fan_in)`` (Eq. 47), i.e. unit norm up
    to the ``eps`` term. Computed in float32 like MMAudio.

    Args:
        weight: raw conv weight ``[C_out, C_in, K]`` (any float dtype; a ``[C_out, C_in]`` linear
            weight works too).
        eps: the normalisation's epsilon (MMAudio / EDM2: 1e-4).

    Returns:
        The normalised weight, float32, same shape.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point() or weight.dim() < 2:
        got = f"{weight.dtype} {tuple(weight.shape)}" if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(
            f"normalise_edm2_conv expects a float conv weight [C_out, C_in, K]; got {got}. "
            "Pass one of the VAE's '*.weight' tensors."
        )
    w = weight.to(torch.float32)
    fan_in = w[0].numel()
    norm = torch.linalg.vector_norm(w, dim=tuple(range(1, w.dim())), keepdim=True)  # [C_out, 1, 1]
    w = w / (eps + norm / math.sqrt(fan_in))  # unit RMS per output channel
    return w / math.sqrt(fan_in)


def weight_norm_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Fold one weight-norm pair: ``w = g * v / |v|`` (Salimans & Kingma 2016), float32.

    The norm runs over the dims where ``g`` has size 1 (``g`` is ``[C, 1, 1]`` for torch's default
    ``dim=0``, ``[1, C, 1]`` for ``dim=1``), or over all of ``v`` when ``g`` is a scalar (``dim=None``).

    Args:
        g: magnitude, ``[C_out, 1, K=1]``-style (size 1 on the normalised dims) or a scalar.
        v: direction, the conv weight's shape, e.g. ``[C_out, C_in, K]`` or ``[C_in, C_out, K]``.

    Returns:
        The effective weight, float32, shaped like ``v``.
    """
    if g.dim() == 0:
        dims: tuple[int, ...] = tuple(range(v.dim()))
    elif g.dim() == v.dim() and all(gs in (1, vs) for gs, vs in zip(g.shape, v.shape)):
        dims = tuple(d for d in range(v.dim()) if g.shape[d] == 1)
    else:
        raise ValueError(
            f"weight-norm magnitude {tuple(g.shape)} does not fit direction {tuple(v.shape)}: expected g of v's rank "
            "with size 1 on the normalised dims, or a scalar. The pair comes from different layers; use an "
            "unmodified checkpoint."
        )
    if not dims:
        raise ValueError(
            f"weight-norm magnitude {tuple(g.shape)} has the direction's full shape: expected size 1 on the "
            "normalised dims. These are not a weight-norm pair; use an unmodified checkpoint."
        )
    v32 = v.to(torch.float32)
    norm = torch.linalg.vector_norm(v32, dim=dims, keepdim=True)
    return v32 * (g.to(torch.float32) / norm)


def _weight_norm_pairs(state: Mapping[str, torch.Tensor]) -> list[tuple[str, str, str]]:
    """``(prefix, g_key, v_key)`` of every weight-norm pair; a half pair is an error."""
    pairs = []
    for g_suffix, v_suffix in _WEIGHT_NORM_SPELLINGS:
        for key in state:
            for suffix, other in ((g_suffix, v_suffix), (v_suffix, g_suffix)):
                if key == suffix or key.endswith("." + suffix):
                    prefix = key[: len(key) - len(suffix)]
                    if prefix + other not in state:
                        raise ValueError(
                            f"weight-norm key {key!r} has no partner {prefix + other!r}: expected both halves "
                            f"({g_suffix} and {v_suffix}). The checkpoint is damaged or was edited; use the original."
                        )
                    if suffix == g_suffix:
                        pairs.append((prefix, key, prefix + other))
    return pairs


def fold_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every weight-norm pair of a state dict by the plain ``weight`` it stands for.

    Both spellings are folded: ``X.weight_g`` / ``X.weight_v`` and ``X.parametrizations.weight.original0``
    / ``original1`` become ``X.weight`` (float32, see :func:`weight_norm_weight`); other entries pass
    through unchanged and in order. The input is not modified.

    Args:
        state: a state dict, e.g. BigVGAN's ``["generator"]``.

    Returns:
        A new state dict without weight-norm keys.
    """
    pairs = {g_key: (prefix, v_key) for prefix, g_key, v_key in _weight_norm_pairs(state)}
    v_keys = {v_key for _, v_key in pairs.values()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in v_keys:
            continue
        if key in pairs:
            prefix, v_key = pairs[key]
            target = prefix + "weight"
            if target in state:
                raise ValueError(
                    f"{target!r} is stored both plainly and as the weight-norm pair {key!r} / {v_key!r}: expected "
                    "one of them. The checkpoint mixes two formats; use the original file."
                )
            out[target] = weight_norm_weight(value, state[v_key])
        else:
            out[key] = value
    return out


def mel_tensors() -> dict[str, torch.Tensor]:
    """The two mel-converter buffers ComfyUI's ``AudioAutoencoder`` expects in the file.

    ``mel_converter.mel_basis`` is librosa's default filterbank (Slaney mel scale, Slaney area
    normalisation; 80 mels over 0..8 kHz of a 1024-point STFT at 16 kHz) laid out ``[80, 513]``
    (mels x STFT bins, ComfyUI multiplies ``mel_basis @ spec``); ``mel_converter.hann_window`` is
    ``torch.hann_window(1024)`` (periodic), as in MMAudio's ``MelConverter``.

    Returns:
        ``{"mel_converter.mel_basis": [80, 513], "mel_converter.hann_window": [1024]}``, float32.
    """
    c = MMAUDIO_16K_MEL
    return {
        "mel_converter.mel_basis": mel_filterbank(c).contiguous(),
        "mel_converter.hann_window": torch.hann_window(c.n_fft, dtype=torch.float32),
    }


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _some_keys(state: Mapping[str, Any], n: int = 6) -> str:
    keys = list(state)
    return ", ".join(repr(k) for k in keys[:n]) + (f", ... ({len(keys)} keys)" if len(keys) > n else "") or "no keys"


def _check_tensors(state: Any, source: str, expected: str) -> None:
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state dict: expected {expected}.")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{source} is not a plain state dict: entries {bad[:6]} are not tensors (a training checkpoint or a "
            f"wrapper?). Expected {expected}."
        )


def _check_not_converted(state: Mapping[str, torch.Tensor], source: str) -> None:
    if any(k.startswith(("vae.", "vocoder.", "mel_converter.")) for k in state):
        raise ValueError(
            f"{source} is already in ComfyUI's layout (keys 'vae.*' / 'vocoder.*'): nothing to convert. "
            "Put it in ComfyUI/models/vae/ and load it with Load VAE."
        )


def _check_vae_state(state: Mapping[str, torch.Tensor], source: str) -> None:
    _check_tensors(state, source, _VAE_FILE)
    _check_not_converted(state, source)
    if any(k.startswith("conv_pre.") for k in state):
        raise ValueError(
            f"{source} looks like the BigVGAN vocoder, not the VAE: pass v1-16.pth first and best_netG.pt second."
        )
    required = [f"{part}.{conv}.weight" for part in ("encoder", "decoder") for conv in ("conv_in", "conv_out")]
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(
            f"{source} is not MMAudio's VAE: missing expected key(s) {missing}; it has {_some_keys(state)}. "
            f"Pass {_VAE_FILE}."
        )
    for k in required:
        if state[k].dim() != 3:
            raise ValueError(
                f"{source}: {k!r} has shape {tuple(state[k].shape)}: expected a Conv1d weight [C_out, C_in, K]. "
                f"Pass {_VAE_FILE}."
            )
    n_mels = state["encoder.conv_in.weight"].shape[1]
    if n_mels != MMAUDIO_16K_MEL.n_mels or state["decoder.conv_out.weight"].shape[0] != n_mels:
        which = " (128 mel bins: the 44.1 kHz VAE v1-44.pth)" if n_mels == 128 else ""
        raise ValueError(
            f"{source} works on {n_mels} mel bins{which}: expected {MMAUDIO_16K_MEL.n_mels}, because ComfyUI 0.26 "
            f"only builds the 16 kHz MMAudio VAE. Pass {_VAE_FILE}."
        )
    z = state["decoder.conv_in.weight"].shape[1]
    if z != LATENT_CHANNELS or state["encoder.conv_out.weight"].shape[0] != 2 * LATENT_CHANNELS:
        raise ValueError(
            f"{source} has {z} latent channels: expected {LATENT_CHANNELS} (MMAudio 16k, what ComfyUI assumes). "
            f"Pass {_VAE_FILE}."
        )


def _check_vocoder_state(state: Mapping[str, torch.Tensor], source: str) -> None:
    _check_tensors(state, source, _VOCODER_FILE + " or its ['generator'] state dict")
    if "encoder.conv_in.weight" in state:
        raise ValueError(f"{source} looks like the VAE, not the vocoder: pass v1-16.pth first and best_netG.pt second.")
    _check_not_converted(state, source)
    detect = COMFY_DETECTION_KEY.removeprefix("vocoder.")
    conv_pre_spellings = ("conv_pre.weight", "conv_pre.weight_v", "conv_pre.parametrizations.weight.original1")
    conv_pre = next((k for k in conv_pre_spellings if k in state), None)
    missing = [k for k in (detect, "conv_post.bias") if k not in state]
    if conv_pre is None:
        missing.insert(0, " or ".join(conv_pre_spellings))
    if missing:
        hint = (
            f" Without {detect!r} ComfyUI's Load VAE would not recognise the file as MMAudio's VAE."
            if detect in missing
            else ""
        )
        raise ValueError(
            f"{source} is not MMAudio's BigVGAN vocoder: missing expected key(s) {missing}; it has "
            f"{_some_keys(state)}.{hint} Pass {_VOCODER_FILE}."
        )
    n_mels = state[conv_pre].shape[1] if state[conv_pre].dim() == 3 else -1
    if n_mels != MMAUDIO_16K_MEL.n_mels:
        raise ValueError(
            f"{source}: {conv_pre!r} has shape {tuple(state[conv_pre].shape)}, i.e. {n_mels} mel bins: expected "
            f"{MMAUDIO_16K_MEL.n_mels} (the 16 kHz BigVGAN paired with v1-16.pth). Pass {_VOCODER_FILE}."
        )


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------


def _is_fixed_buffer(key: str) -> bool:
    """Non-learned buffers of ComfyUI's AudioAutoencoder: stored float32 whatever ``dtype`` is."""
    return key.startswith("mel_converter.") or key in ("vae.data_mean", "vae.data_std") or key.endswith(".filter")


def comfy_mmaudio_state(
    vae_state: Mapping[str, torch.Tensor],
    vocoder_state: Mapping[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Build the state dict of ComfyUI's ``AudioAutoencoder(mode="16k")`` from MMAudio's two state dicts.

    Works on any device, ``meta`` included (no value is inspected).

    Args:
        vae_state: MMAudio's VAE state dict (``v1-16.pth``), raw EDM2 weights.
        vocoder_state: BigVGAN's generator state dict (``best_netG.pt["generator"]``), weight-norm pairs.
        dtype: storage dtype of the learned tensors, ``torch.float32`` or ``torch.float16``; fixed
            buffers stay float32.

    Returns:
        ``(state, counts)``: the keys ``vae.*``, ``vocoder.*``, ``mel_converter.*``, and
        ``{"vae_tensors", "vocoder_tensors", "folded_weight_norms", "normalised_edm2_convs"}``.
    """
    if dtype not in _DTYPES.values():
        raise ValueError(
            f"dtype={dtype} is not supported: expected torch.float32 or torch.float16. "
            "ComfyUI computes this VAE in float32; fp16 only halves the file."
        )
    _check_vae_state(vae_state, "vae_state")  # the loaders already checked files, naming their paths
    _check_vocoder_state(vocoder_state, "vocoder_state")

    out: dict[str, torch.Tensor] = {}
    normalised = 0
    for key, value in vae_state.items():
        # Every '*.weight' of MMAudio's VAE belongs to an MPConv1D (the VAE has no other layer with weights).
        if key.endswith(".weight") and value.dim() == 3:
            value = normalise_edm2_conv(value)
            normalised += 1
        out["vae." + key] = value
    folded = len(_weight_norm_pairs(vocoder_state))
    vocoder = fold_weight_norm(vocoder_state)
    out.update({"vocoder." + key: value for key, value in vocoder.items()})
    out.update(mel_tensors())
    assert COMFY_DETECTION_KEY in out, "checked by _check_vocoder_state"

    for key, value in out.items():
        if value.is_floating_point():
            out[key] = value.to(torch.float32 if _is_fixed_buffer(key) else dtype)
    counts = {
        "vae_tensors": len(vae_state),
        "vocoder_tensors": len(vocoder),
        "folded_weight_norms": folded,
        "normalised_edm2_convs": normalised,
    }
    return out, counts


def _load_state(path: str | os.PathLike[str], expected: str) -> Any:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} does not exist: expected {expected}. Check the path.")
    try:
        if path.lower().endswith(_SAFETENSORS_SUFFIXES):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip / safetensors each raise their own error types
        raise ValueError(
            f"{path!r} could not be read as a PyTorch checkpoint ({type(e).__name__}: {e}). Expected {expected}; "
            "re-download it if it is truncated."
        ) from e


def load_mmaudio_vae_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read and check MMAudio's 16 kHz VAE state dict (``v1-16.pth``; a ``.safetensors`` copy works too).

    Args:
        path: the VAE checkpoint.

    Returns:
        Its state dict on the CPU (raw EDM2 weights).
    """
    state = _load_state(path, _VAE_FILE)
    if isinstance(state, Mapping) and "generator" in state:
        raise ValueError(
            f"{os.fspath(path)!r} holds a 'generator' (the BigVGAN vocoder), not the VAE: pass v1-16.pth first "
            "and best_netG.pt second."
        )
    _check_vae_state(state, repr(os.fspath(path)))
    return dict(state)


def load_bigvgan_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read and check MMAudio's BigVGAN vocoder state dict (``best_netG.pt``).

    Accepts the training checkpoint layout ``{"generator": state_dict, ...}`` or a bare state dict.

    Args:
        path: the vocoder checkpoint.

    Returns:
        The generator's state dict on the CPU (weight-norm pairs not yet folded).
    """
    state = _load_state(path, _VOCODER_FILE)
    if isinstance(state, Mapping) and isinstance(state.get("generator"), Mapping):
        state = state["generator"]
    _check_vocoder_state(state, repr(os.fspath(path)))
    return dict(state)


def convert_mmaudio_for_comfy(
    vae_path: str | os.PathLike[str],
    vocoder_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
) -> dict[str, int]:
    """Write MMAudio's ``v1-16.pth`` + ``best_netG.pt`` as one file ComfyUI 0.26's ``Load VAE`` reads.

    The file is written atomically (temporary file + rename) and carries ``{"format": ...,
    "source_vae": ..., "source_vocoder": ...}`` in its safetensors metadata.

    Args:
        vae_path: MMAudio's 16 kHz VAE checkpoint.
        vocoder_path: MMAudio's BigVGAN 16 kHz vocoder checkpoint.
        out_path: the ``.safetensors`` file to write (e.g. ``ComfyUI/models/vae/mmaudio_16k_vae_bigvgan.safetensors``);
            replaced if it exists.
        dtype: storage dtype of the learned weights, ``torch.float32`` (1.14 GB) or ``torch.float16`` (0.57 GB).

    Returns:
        ``{"vae_tensors", "vocoder_tensors", "folded_weight_norms", "normalised_edm2_convs"}``.
    """
    out_str = os.fspath(out_path)
    if not out_str.lower().endswith(_SAFETENSORS_SUFFIXES):
        raise ValueError(
            f"out_path={out_str!r} must end in .safetensors: ComfyUI reads other suffixes with torch.load. "
            "Rename it, e.g. mmaudio_16k_vae_bigvgan.safetensors."
        )
    for src in (vae_path, vocoder_path):
        if os.path.exists(out_str) and os.path.exists(src) and os.path.samefile(out_str, src):
            raise ValueError(f"out_path={out_str!r} is an input file: expected a new file. Choose another name.")
    vae_state = load_mmaudio_vae_state(vae_path)
    vocoder_state = load_bigvgan_state(vocoder_path)
    state, counts = comfy_mmaudio_state(vae_state, vocoder_state, dtype=dtype)
    metadata = {
        "format": FORMAT,
        "source_vae": os.path.basename(os.fspath(vae_path)),
        "source_vocoder": os.path.basename(os.fspath(vocoder_path)),
    }
    atomic_save_file(state, out_str, metadata=metadata)
    log.info(
        "wrote %s: %d VAE tensors (%d EDM2 convs normalised), %d vocoder tensors (%d weight norms folded), "
        "mel basis + Hann window; learned weights in %s",
        out_str,
        counts["vae_tensors"],
        counts["normalised_edm2_convs"],
        counts["vocoder_tensors"],
        counts["folded_weight_norms"],
        str(dtype).removeprefix("torch."),
    )
    return counts


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harmony_core.io.mmaudio_comfy VAE VOCODER OUT [--dtype fp32|fp16]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m harmony_core.io.mmaudio_comfy",
        description="Combine MMAudio's 16 kHz VAE (v1-16.pth) and BigVGAN vocoder (best_netG.pt) into one "
        "safetensors file that ComfyUI's core Load VAE node reads (put it in ComfyUI/models/vae/).",
    )
    parser.add_argument("vae", help="MMAudio's ext_weights/v1-16.pth")
    parser.add_argument("vocoder", help="MMAudio's ext_weights/best_netG.pt")
    parser.add_argument("out", help="output .safetensors, e.g. mmaudio_16k_vae_bigvgan.safetensors")
    parser.add_argument(
        "--dtype",
        choices=sorted(_DTYPES),
        default="fp32",
        help="storage type of the weights (ComfyUI computes in fp32 either way; fp16 halves the file)",
    )
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        counts = convert_mmaudio_for_comfy(args.vae, args.vocoder, args.out, dtype=_DTYPES[args.dtype])
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
