"""Frame-wise windows follow real time spans and are complete, checked against loops."""

from __future__ import annotations

import torch

from harmony_core.config import TimelineConfig
from harmony_core.model.windows import frame_overlap_masks, local_windows


def _video_span_s(tl, i):
    if i == 0:
        return 0.0, 1 / tl.fps
    return (4 * i - 3) / tl.fps, (4 * i + 1) / tl.fps


def _brute(tl, n_v, n_a, wa, wv):
    dur = 4 / tl.fps
    r = tl.audio_latent_rate
    a2v = torch.zeros(n_v, n_a, dtype=torch.bool)
    for i in range(n_v):
        s, e = _video_span_s(tl, i)
        for j in range(n_a):
            if j / r < e + wa * dur - 1e-12 and (j + 1) / r > s - wa * dur + 1e-12:
                a2v[i, j] = True
    v2a = torch.zeros(n_a, n_v, dtype=torch.bool)
    for j in range(n_a):
        for i in range(n_v):
            s, e = _video_span_s(tl, i)
            if s < (j + 1) / r + wv * dur - 1e-12 and e > j / r - wv * dur + 1e-12:
                v2a[j, i] = True
    return a2v, v2a


def test_windows_equal_a_brute_force_overlap_loop():
    tl = TimelineConfig()
    for n_v, n_a, wa, wv in ((31, 157, 1, 1), (13, 62, 0, 0), (9, 42, 2, 1)):
        a2v, v2a = frame_overlap_masks(tl, n_v, n_a, wa, wv)
        b_a2v, b_v2a = _brute(tl, n_v, n_a, wa, wv)
        assert torch.equal(a2v, b_a2v)
        assert torch.equal(v2a, b_v2a)


def test_first_latent_frame_covers_one_pixel_frame_only():
    # frame 0 spans [0, 1/24) s; audio latents are 32 ms: tokens 0 and 1 overlap it, token 2 does not
    a2v, _ = frame_overlap_masks(TimelineConfig(), 13, 62, 0, 0)
    assert a2v[0].nonzero().flatten().tolist() == [0, 1]
    # frame 1 spans pixel frames [1, 5) = [41.7, 208.3) ms -> tokens 1..6
    assert a2v[1].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]


def test_v2a_groups_hold_every_audio_token_once_with_its_own_window():
    tl = TimelineConfig()
    win = local_windows(tl, 13, 62, a2v_window=1, v2a_window=1, rope_align=True)
    q = win.v2a_tokens.shape[1]
    seen = []
    for g in range(13):
        for s in range(q):
            if win.v2a_tokens_valid[g, s]:
                j = int(win.v2a_tokens[g, s])
                seen.append(j)
                assert int(win.v2a_slot[j]) == g * q + s
                frames = win.v2a_frames[g][win.v2a_frames_valid[g] & win.v2a_query_mask[g, s]].tolist()
                assert frames == win.v2a_mask[j].nonzero().flatten().tolist()
    assert sorted(seen) == list(range(62))


def test_a_shorter_stream_never_leaves_a_window_empty():
    tl = TimelineConfig()
    a2v, v2a = frame_overlap_masks(tl, 13, 10, 0, 0)  # audio covers only ~0.3 s of a 2 s clip
    assert a2v.any(dim=1).all() and v2a.any(dim=1).all()
    assert a2v[12].nonzero().flatten().tolist() == [9]  # nearest audio token in time


def test_unaligned_ablation_uses_raw_indices():
    tl = TimelineConfig()
    aligned = local_windows(tl, 13, 62, a2v_window=1, v2a_window=1, rope_align=True)
    raw = local_windows(tl, 13, 62, a2v_window=1, v2a_window=1, rope_align=False)
    assert torch.equal(raw.a2v_k_pos, torch.arange(62, dtype=torch.float32))
    assert abs(float(aligned.a2v_k_pos[31]) - ((31.5 / 31.25) * 24 + 1) / 4) < 1e-5  # (f + 1) / 4 past frame 1
