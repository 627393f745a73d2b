"""Trainable speech-transcript encoder: character embedding + ConvNeXt-V2 blocks (F5-TTS style).

Harmony (arXiv 2511.21579, §3.2.2, Eq. 2) encodes the transcript with a dedicated speech encoder cited as
F5-TTS, separate from the caption encoder, so that phonetic content and sound description do not
share one embedding. F5-TTS embeds characters, adds sinusoidal absolute positions and refines them
with ConvNeXt-V2 blocks (Woo et al. 2023: depthwise conv → LayerNorm → pointwise expand → GELU →
global response normalisation (GRN) → pointwise project → residual). This encoder is trained with
the DiT from scratch.

Vocabulary (``TRANSCRIPT_VOCAB``; id = position in the tuple):

====  ===========================================================================================
id    symbol
====  ===========================================================================================
0     ``<pad>`` (padding; its embedding row is fixed at zero)
1     ``<unk>`` (any character outside the table after normalisation, e.g. CJK, emoji, ``@``)
2     space
3-28  ``a`` … ``z``
29-38 ``0`` … ``9``
39-49 ``. , ! ? ; : ' " - ( )``
====  ===========================================================================================

Normalisation before lookup (:func:`normalize_transcript`): accents are stripped (``é`` → ``e``),
typographic quotes and dashes become ASCII (``’`` → ``'``, ``“`` → ``"``, ``—`` → ``-``), ``…``
becomes ``...``, text is lower-cased and every run of whitespace becomes one space, trimmed.

Empty transcripts (no speech): the row is one ``<pad>`` with mask False and the encoder outputs
zeros there. A row whose mask is all False carries no speech; cross-attention must skip it (e.g.
zero its attention output) instead of taking a softmax over zero keys.

Receptive field: every block's depthwise conv sees ±``kernel_size // 2`` characters, so the
convolutional path of N blocks is local to ±N·(kernel_size // 2) characters. GRN is the one
sequence-global operation (it rescales channels by their L2 norm over the whole transcript); its
gain and bias start at zero, so an untrained encoder is exactly local.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_MAX_CHARS",
    "GRN",
    "PAD_ID",
    "TRANSCRIPT_VOCAB",
    "TRANSCRIPT_VOCAB_SIZE",
    "UNK_ID",
    "ConvNeXtV2Block",
    "TranscriptEncoder",
    "TranscriptEncoderConfig",
    "detokenize_transcript",
    "normalize_transcript",
    "tokenize_transcript",
]

PAD_ID = 0
UNK_ID = 1
TRANSCRIPT_VOCAB: tuple[str, ...] = (
    ("<pad>", "<unk>", " ") + tuple("abcdefghijklmnopqrstuvwxyz") + tuple("0123456789") + tuple(".,!?;:'\"-()")
)
TRANSCRIPT_VOCAB_SIZE = len(TRANSCRIPT_VOCAB)  # 50
_CHAR_TO_ID = {c: i for i, c in enumerate(TRANSCRIPT_VOCAB) if i > UNK_ID}
# Shown for <unk> by detokenize_transcript (not in the vocabulary, so it cannot be confused).
_UNK_CHAR = "\N{REPLACEMENT CHARACTER}"
# 10 s clips carry ~150-250 characters of speech; 512 leaves room and bounds cross-attention cost.
DEFAULT_MAX_CHARS = 512
_TYPOGRAPHIC = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
    }
)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def normalize_transcript(text: str) -> str:
    """Normalise a transcript the way :func:`tokenize_transcript` sees it (see the module docstring).

    Args:
        text: raw transcript.

    Returns:
        Lower-cased, accent-stripped text with ASCII quotes/dashes and single spaces, trimmed.
    """
    if not isinstance(text, str):
        raise TypeError(f"transcript {text!r} has type {type(text).__name__}: expected str.")
    decomposed = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHIC))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.lower().split())


def tokenize_transcript(texts: Sequence[str], *, max_len: int = DEFAULT_MAX_CHARS) -> tuple[torch.Tensor, torch.Tensor]:
    """Map transcripts to character ids over ``TRANSCRIPT_VOCAB``, right-padded with ``<pad>`` = 0.

    Args:
        texts: B transcripts; ``""`` means nobody speaks.
        max_len: most characters kept per transcript (longer ones are cut at the end), >= 1.

    Returns:
        ids ``[B, L]`` long and mask ``[B, L]`` bool (True = real character), on CPU, with L the
        longest normalised transcript (at least 1). An empty transcript is a row of ``<pad>``
        with an all-False mask.
    """
    if isinstance(texts, str):
        raise TypeError(f"texts={texts!r} is a single str: expected a list of transcripts. Pass [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("texts=[] is invalid: expected at least one transcript. Pass [''] for silence.")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len={max_len!r} is invalid: expected an int >= 1. Use {DEFAULT_MAX_CHARS}.")
    rows = [[_CHAR_TO_ID.get(c, UNK_ID) for c in normalize_transcript(t)][:max_len] for t in texts]
    L = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), L), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, ids != PAD_ID


def detokenize_transcript(ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
    """Turn ids back into normalised text; ``<unk>`` shows as U+FFFD, padding is dropped.

    Args:
        ids: ``[B, L]`` integer ids from :func:`tokenize_transcript`.
        mask: ``[B, L]`` bool; None = every non-``<pad>`` id is real.

    Returns:
        B strings; ``detokenize_transcript(*tokenize_transcript([t]))[0] == normalize_transcript(t)``
        for any ``t`` whose characters are all in the vocabulary.
    """
    if ids.dim() != 2:
        raise ValueError(f"ids has shape {tuple(ids.shape)}: expected [B, L].")
    if mask is None:
        mask = ids != PAD_ID
    out = []
    for row, keep in zip(ids.tolist(), mask.tolist(), strict=True):
        out.append("".join(_UNK_CHAR if i == UNK_ID else TRANSCRIPT_VOCAB[i] for i, k in zip(row, keep) if k))
    return out


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptEncoderConfig:
    """Shape of the transcript encoder.

    Attributes:
        vocab_size: rows of the character table; at least ``TRANSCRIPT_VOCAB_SIZE`` (50).
        dim: width D of the embeddings and of the output.
        num_blocks: ConvNeXt-V2 blocks (F5-TTS uses 4).
        kernel_size: depthwise conv kernel, odd (ConvNeXt and F5-TTS use 7).
        expansion: pointwise MLP width = expansion · dim (F5-TTS uses 2; ConvNeXt uses 4).
        pos_embed: add sinusoidal absolute positions after the character embedding, as F5-TTS
            does, so cross-attention can tell where in the sentence a character sits.
        eps: LayerNorm epsilon (ConvNeXt-V2 uses 1e-6).
    """

    vocab_size: int = TRANSCRIPT_VOCAB_SIZE
    dim: int = 256
    num_blocks: int = 4
    kernel_size: int = 7
    expansion: int = 2
    pos_embed: bool = True
    eps: float = 1e-6

    def __post_init__(self) -> None:
        def fail(name: str, expected: str, fix: str) -> None:
            raise ValueError(
                f"TranscriptEncoderConfig.{name}={getattr(self, name)!r} is invalid: expected {expected}. {fix}"
            )

        if self.vocab_size < TRANSCRIPT_VOCAB_SIZE:
            fail("vocab_size", f">= {TRANSCRIPT_VOCAB_SIZE} (TRANSCRIPT_VOCAB)", "Use TRANSCRIPT_VOCAB_SIZE.")
        if self.dim < 2 or self.dim % 2:
            fail("dim", "an even int >= 2 (sinusoidal positions use sin/cos pairs)", "Use e.g. 256.")
        if self.num_blocks < 0:
            fail("num_blocks", ">= 0", "Use e.g. 4.")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            fail("kernel_size", "an odd int >= 1 so the conv is centred", "Use 7.")
        if self.expansion < 1:
            fail("expansion", ">= 1", "Use 2..4.")
        if not self.eps > 0:
            fail("eps", "> 0", "Use 1e-6.")

    @property
    def receptive_radius(self) -> int:
        """Characters each side that the convolutional path can see: num_blocks · (kernel_size // 2)."""
        return self.num_blocks * (self.kernel_size // 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for checkpoint metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranscriptEncoderConfig:
        """Rebuild a config stored by :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"stored TranscriptEncoderConfig has unknown keys {unknown}: this version of harmony_core does "
                f"not know them. Load the checkpoint with the harmony_core version that wrote it."
            )
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


def _sinusoidal_positions(L: int, dim: int, *, device: torch.device) -> torch.Tensor:
    """Transformer sinusoidal positions ``[L, dim]`` (Vaswani et al. 2017), computed in fp32."""
    pos = torch.arange(L, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)  # [L, dim]


class GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation over the valid positions of each sequence.

    ``y = γ·(x·N(x)) + β + x`` with ``N(x)_c = G_c / mean_c(G)``, ``G_c = ||x_{:, c}||₂`` over time
    (ConvNeXt-V2 eq. 1-3). Padded positions are excluded from the norm, so padding a batch does not
    change any sequence's result. γ and β start at zero, making the block start without GRN.

    Args:
        dim: channels C.
        eps: added to the channel mean before dividing.
        device, dtype: factory arguments for γ and β.
    """

    def __init__(
        self, dim: int, *, eps: float = 1e-6, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim, device=device, dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, L, C]``; mask ``[B, L]`` bool. Returns ``[B, L, C]``."""
        xf = x.float() * mask.unsqueeze(-1)  # fp32 norm: squares of bf16 activations overflow easily
        # vector_norm has a zero (not NaN) gradient at 0, which an all-padding (empty) transcript hits
        g = torch.linalg.vector_norm(xf, dim=1, keepdim=True)  # [B, 1, C]
        n = (g / (g.mean(dim=-1, keepdim=True) + self.eps)).to(x.dtype)
        return self.gamma * (x * n) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """One 1-D ConvNeXt-V2 block on ``[B, L, D]`` sequences, with padding-aware masking.

    Args:
        dim: width D.
        ffn_dim: pointwise MLP width.
        kernel_size: odd depthwise kernel.
        eps: LayerNorm / GRN epsilon.
        ops: layer namespace (``torch.nn`` or ComfyUI's ``comfy.ops`` casting ops).
        device, dtype: factory arguments.
    """

    def __init__(
        self,
        *,
        dim: int,
        ffn_dim: int,
        kernel_size: int = 7,
        eps: float = 1e-6,
        ops: Any = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        ops = nn if ops is None else ops
        fk = {"device": device, "dtype": dtype}
        self.dwconv = ops.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, **fk)
        self.norm = ops.LayerNorm(dim, eps=eps, **fk)
        self.pwconv1 = ops.Linear(dim, ffn_dim, **fk)
        self.grn = GRN(ffn_dim, eps=eps, **fk)
        self.pwconv2 = ops.Linear(ffn_dim, dim, **fk)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, L, D]`` with zeros at padded positions; mask ``[B, L]`` bool.

        Returns ``[B, L, D]``, zero at padded positions.
        """
        m = mask.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        # Zeros at padded positions make the conv see exactly the zero padding of the unpadded sequence.
        y = self.dwconv((x * m).transpose(1, 2)).transpose(1, 2)  # [B, L, D]
        y = F.gelu(self.pwconv1(self.norm(y)))  # [B, L, ffn_dim]
        y = self.pwconv2(self.grn(y, mask))  # [B, L, D]
        return (x + y) * m


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class TranscriptEncoder(nn.Module):
    """Character embedding (+ sinusoidal positions) → ConvNeXt-V2 blocks → ``[B, L, D]``.

    All knobs are keyword-only and mirror :class:`TranscriptEncoderConfig` (kept as ``.config``).

    Args:
        vocab_size, dim, num_blocks, kernel_size, expansion, pos_embed, eps: see
            :class:`TranscriptEncoderConfig`.
        ops: layer namespace (``torch.nn`` or ComfyUI's ``comfy.ops``).
        device, dtype: factory arguments.
    """

    def __init__(
        self,
        *,
        vocab_size: int = TRANSCRIPT_VOCAB_SIZE,
        dim: int = 256,
        num_blocks: int = 4,
        kernel_size: int = 7,
        expansion: int = 2,
        pos_embed: bool = True,
        eps: float = 1e-6,
        ops: Any = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = TranscriptEncoderConfig(
            vocab_size=vocab_size,
            dim=dim,
            num_blocks=num_blocks,
            kernel_size=kernel_size,
            expansion=expansion,
            pos_embed=pos_embed,
            eps=eps,
        )
        ops = nn if ops is None else ops
        # padding_idx keeps the <pad> row at zero and out of the gradient.
        self.embed = ops.Embedding(vocab_size, dim, padding_idx=PAD_ID, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(
            ConvNeXtV2Block(
                dim=dim, ffn_dim=expansion * dim, kernel_size=kernel_size, eps=eps, ops=ops, device=device, dtype=dtype
            )
            for _ in range(num_blocks)
        )

    @classmethod
    def from_config(
        cls,
        config: TranscriptEncoderConfig,
        *,
        ops: Any = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> TranscriptEncoder:
        """Build the encoder described by ``config``."""
        return cls(**config.to_dict(), ops=ops, device=device, dtype=dtype)

    @property
    def dim(self) -> int:
        """Output width D."""
        return self.config.dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode character ids.

        Args:
            ids: ``[B, L]`` integer ids in ``[0, vocab_size)`` from :func:`tokenize_transcript`.
            mask: ``[B, L]`` bool, True for real characters.

        Returns:
            ``[B, L, D]`` in the embedding's dtype, exactly zero where ``mask`` is False (so an
            empty transcript gives an all-zero row).
        """
        if ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"ids has shape {tuple(ids.shape)} and dtype {ids.dtype}: expected integer [B, L].")
        if mask.shape != ids.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} and dtype {mask.dtype}: expected bool {tuple(ids.shape)} "
                f"like ids. Use the mask returned by tokenize_transcript."
            )
        V = self.config.vocab_size
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= V):
            raise ValueError(
                f"ids span [{int(ids.min())}, {int(ids.max())}]: expected ids in [0, {V}). "
                f"Tokenise with tokenize_transcript or raise vocab_size."
            )
        mask = mask.to(ids.device)
        m = mask.unsqueeze(-1)
        x = self.embed(ids)  # [B, L, D]
        if self.config.pos_embed:
            x = x + _sinusoidal_positions(ids.shape[1], self.config.dim, device=ids.device).to(x.dtype)
        x = x * m.to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return x
