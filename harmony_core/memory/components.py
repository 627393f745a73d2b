"""Sizes and working memory of the models around the DiT: the text encoder and the two VAEs.

Parameter counts were read off the reference modules (Ovi's copies of umT5, the Wan2.2 VAE,
MMAudio's 16 kHz VAE and its BigVGAN vocoder) by building them on the ``meta`` device; the umT5
count is also re-derived from its dimensions below. They match the published checkpoint sizes:
``Wan2.2_VAE.pth`` 2.8 GB in float32 (704.7 M parameters), ``models_t5_umt5-xxl-enc-bf16.pth``
11.4 GB in bfloat16 (5.68 B).

The VAE decode / encode working sets come from a structural model of Wan's chunked causal VAE
(``CausalVideoVAE``): one latent frame is decoded at a time, every causal 3x3x3 convolution keeps
the last two frames of its input as a cache across chunks, and the largest transient is a
residual convolution at the top resolution (see ``CausalVideoVAE.decode_elements``). Convolution
workspace (cuDNN scratch) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import HarmonyConfig

__all__ = [
    "Components",
    "default_components",
    "TextEncoderSpec",
    "CausalVideoVAE",
    "AudioCodecSpec",
    "UMT5_XXL",
    "WAN22_VAE_SPEC",
    "MMAUDIO_16K_SPEC",
    "umt5_encoder_params",
]


def umt5_encoder_params(
    *, vocab: int, dim: int, dim_ffn: int, heads: int, layers: int, buckets: int
) -> tuple[int, int]:
    """Parameters of a T5 v1.1 / umT5 encoder: ``(total, in Linear weights)``.

    Per layer: q, k, v, o (``4 * dim^2``), the gated FFN (``3 * dim * dim_ffn``), two RMSNorm
    gains and (umT5: not shared) a relative-position table ``buckets x heads``; plus the token
    embedding and the final norm.
    """
    linear = layers * (4 * dim * dim + 3 * dim * dim_ffn)
    other = vocab * dim + layers * (2 * dim + buckets * heads) + dim
    return linear + other, linear


@dataclass(frozen=True)
class TextEncoderSpec:
    """A text encoder's size and the shape of its largest activations.

    Attributes:
        name: for messages.
        params: all parameters; linear_params: those in Linear weights (fp8-able; the token
            embedding is kept in 16 bits, as ComfyUI's fp8 umT5 files do).
        dim, dim_ffn, heads, layers: for the activation estimate; text_len: padded prompt length.
    """

    name: str
    params: int
    linear_params: int
    dim: int
    dim_ffn: int
    heads: int
    layers: int
    text_len: int = 512

    def activation_bytes(self, prompts: int, compute_bytes: int) -> int:
        """Peak activations of encoding ``prompts`` padded prompts: a few hidden states, the gated
        FFN's three ``[L, dim_ffn]`` tensors and the float32 attention scores and softmax
        ``[heads, L, L]`` of one layer (T5 attention is computed explicitly, not fused)."""
        n = self.text_len
        hidden = n * (4 * self.dim + 3 * self.dim_ffn) * compute_bytes
        scores = 2 * self.heads * n * n * 4
        return prompts * (hidden + scores)


_UMT5 = umt5_encoder_params(vocab=256384, dim=4096, dim_ffn=10240, heads=64, layers=24, buckets=32)
UMT5_XXL = TextEncoderSpec(
    name="umT5-XXL encoder",
    params=_UMT5[0],
    linear_params=_UMT5[1],
    dim=4096,
    dim_ffn=10240,
    heads=64,
    layers=24,
)


@dataclass(frozen=True)
class CausalVideoVAE:
    """A Wan2.2-style causal 3-D VAE: sizes and a structural model of its chunked encode / decode.

    Attributes:
        params_encoder, params_decoder: parameter counts (read off the reference module).
        z_dim, enc_dim, dec_dim, dim_mult, num_res_blocks: the architecture (Wan2.2: 48, 160, 256,
            (1, 2, 4, 4), 2).
        temporal_down: which encoder stages halve time (Wan2.2: False, True, True); the decoder
            mirrors it.
        patch: pixel patchify before the encoder / after the decoder (Wan2.2: 2).
        space_stride, time_stride: latent strides (16, 4).

    The working-set model was checked once against the reference Wan2.2 VAE (Ovi's copy, built at
    reduced width on the CPU and measured with ``LivePeak``): decode within 3%, encode +6%.
    """

    name: str
    params_encoder: int
    params_decoder: int
    z_dim: int
    enc_dim: int
    dec_dim: int
    dim_mult: tuple[int, ...]
    num_res_blocks: int
    temporal_down: tuple[bool, ...]
    patch: int = 2
    space_stride: int = 16
    time_stride: int = 4

    @property
    def params(self) -> int:
        return self.params_encoder + self.params_decoder

    def _stages(self, dims: list[int], h: int, w: int, f: int, resblocks: int, up: bool, flags: tuple[bool, ...]):
        """Walk the up (decoder) or down (encoder) stages of one steady chunk of ``f`` frames.

        Returns:
            ``([(c_in, c_out, f, h, w) per stage], cached values, (f, h, w) after the last stage)``.
        """
        cache = 0
        stages = []
        last = len(dims) - 2
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
            # residual blocks: two 3x3x3 causal convs each, caching 2 frames of their input
            cache += 2 * h * w * (c_in + c_out) + 2 * h * w * 2 * c_out * (resblocks - 1)
            stages.append((c_in, c_out, f, h, w))
            if i != last:  # resample at the end of the block
                temporal = flags[i] if i < len(flags) else False
                if up:
                    if temporal:
                        cache += 2 * h * w * c_out  # time_conv cache
                        f *= 2
                    h, w = h * 2, w * 2
                else:
                    h, w = max(1, h // 2), max(1, w // 2)
                    if temporal:
                        cache += h * w * c_out  # downsample3d keeps one (downsampled) frame
                        f = max(1, f // 2)
        return stages, cache, (f, h, w)

    def decode_elements(self, latent_frames: int, latent_h: int, latent_w: int) -> int:
        """Peak number of values alive while decoding ``[1, z, T_v, H, W]`` chunk by chunk.

        Caches of every causal conv, plus the largest residual-convolution working set, plus the
        decoded output accumulated so far and its final concatenation / unpatchify copy. A steady
        chunk (one latent frame) is ``f = time_stride`` frames at the top stage; around one residual
        convolution the reference code holds the up-block's input, the residual branch's input, the
        SiLU output (``f`` frames each), the new 2-frame cache, the causal concatenation with the old
        cache and its padded copy (``f + 2`` each): ``5 f + 6`` frames of the conv's input width, plus
        the ``1x1`` shortcut's output when the width changes. The encoder's down block also keeps a
        clone of its input (``6 f + 6``).
        """
        h, w = latent_h, latent_w
        dims = [self.dec_dim * m for m in (self.dim_mult[-1], *self.dim_mult[::-1])]
        cache = 2 * h * w * self.z_dim + 2 * 2 * (2 * h * w * dims[0])  # conv1 + middle (2 res blocks)
        stages, stage_cache, (f_top, h_top, w_top) = self._stages(
            dims, h, w, 1, self.num_res_blocks + 1, True, tuple(reversed(self.temporal_down))
        )
        cache += stage_cache + 2 * h_top * w_top * dims[-1]  # head conv
        working = max(((5 * f + 6) * max(c_in, c_out) + f * c_out) * hh * ww for c_in, c_out, f, hh, ww in stages)
        pixel_frames = 1 + (latent_frames - 1) * self.time_stride
        out = 3 * pixel_frames * h_top * w_top * self.patch * self.patch
        return cache + max(working + out, 2 * out)

    def encode_elements(self, pixel_frames: int, height: int, width: int) -> int:
        """Peak values alive while encoding ``[1, 3, T, H, W]`` pixels (e.g. a SyncCFG still clip):
        the clip and its patchified copy, the caches, and the largest residual working set."""
        h, w = height // self.patch, width // self.patch
        dims = [self.enc_dim * m for m in (1, *self.dim_mult)]
        stages, cache, (_, h_lo, w_lo) = self._stages(
            dims, h, w, self.time_stride, self.num_res_blocks, False, self.temporal_down
        )
        cache += 2 * h * w * 3 * self.patch**2 + 5 * (2 * h_lo * w_lo * dims[-1])  # conv1, middle, head
        working = max(((6 * f + 6) * max(c_in, c_out) + f * c_out) * hh * ww for c_in, c_out, f, hh, ww in stages)
        clip = 3 * pixel_frames * height * width
        return 2 * clip + cache + working


# The two 1x1 convs between the encoder / decoder and the latent (96 -> 96, 48 -> 48) are counted
# in the encoder / decoder totals: 149_627_776 + 555_049_228 + 9_312 + 2_352 = 704_688_668.
WAN22_VAE_SPEC = CausalVideoVAE(
    name="Wan2.2 VAE",
    params_encoder=149_627_776 + 96 * 96 + 96,
    params_decoder=555_049_228 + 48 * 48 + 48,
    z_dim=48,
    enc_dim=160,
    dec_dim=256,
    dim_mult=(1, 2, 4, 4),
    num_res_blocks=2,
    temporal_down=(False, True, True),
)


@dataclass(frozen=True)
class AudioCodecSpec:
    """A mel VAE plus its vocoder (MMAudio style).

    Attributes:
        params_vae: the mel VAE (encoder + decoder); params_vocoder: the vocoder.
        vocoder_width: channels after the vocoder's first conv; vocoder_hop: samples per mel
            frame; sample_rate.
    """

    name: str
    params_vae: int
    params_vocoder: int
    vocoder_width: int
    vocoder_hop: int
    sample_rate: int

    @property
    def params(self) -> int:
        return self.params_vae + self.params_vocoder

    def decode_elements(self, seconds: float) -> int:
        """Working values of vocoding ``seconds`` of audio: BigVGAN halves its channels at each x2
        upsampling, so every stage after the first holds about ``width * frames * 4`` values;
        assume 16 such tensors live at once (the anti-aliased activations run at 2x rate).
        This is an upper-bound assumption, not a measurement; it is < 0.2 GB for 10 s."""
        frames = int(seconds * self.sample_rate / self.vocoder_hop) + 1
        return 16 * self.vocoder_width * frames * 4


MMAUDIO_16K_SPEC = AudioCodecSpec(
    name="MMAudio 16k VAE + BigVGAN vocoder",
    params_vae=171_657_218,
    params_vocoder=112_199_473,
    vocoder_width=1536,
    vocoder_hop=256,
    sample_rate=16000,
)


@dataclass(frozen=True)
class Components:
    """The models around the DiT that a run loads (None: unknown, counted as 0 and reported).

    Attributes:
        text_encoder: the prompt encoder (both streams share it, as in Ovi).
        video_vae: the video autoencoder; audio_codec: the audio VAE plus vocoder.
    """

    text_encoder: TextEncoderSpec | None = None
    video_vae: CausalVideoVAE | None = None
    audio_codec: AudioCodecSpec | None = None


def default_components(config: HarmonyConfig) -> Components:
    """The components a config's shapes imply: 4096-wide text features are umT5-XXL, 48-channel
    video latents are the Wan2.2 VAE, 20-channel latents at 31.25/s are MMAudio 16k (Ovi's set).
    Anything else (the small synthetic models) is unknown."""
    mmaudio = config.audio.in_channels == 20 and config.timeline.audio_latent_rate == 31.25
    return Components(
        text_encoder=UMT5_XXL if config.video.text_dim == UMT5_XXL.dim else None,
        video_vae=WAN22_VAE_SPEC if config.video.in_channels == WAN22_VAE_SPEC.z_dim else None,
        audio_codec=MMAUDIO_16K_SPEC if mmaudio else None,
    )
