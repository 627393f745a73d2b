"""RoPE: Wan's adjacent-pair convention, 3-D slices, and the shared audio/video timeline."""

from __future__ import annotations

import torch

from harmony_core.config import TimelineConfig, get_preset
from harmony_core.model.rope import (
    apply_rope,
    audio_index_at_time,
    audio_rope_angles,
    rope_inv_freq,
    time_rope_angles,
    video_index_at_time,
    video_rope_angles,
)


def test_apply_rope_matches_complex_multiplication_of_adjacent_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 8, generator=g)
    angles = torch.rand(5, 4, generator=g) * 6
    ref = torch.view_as_real(
        torch.view_as_complex(x.reshape(2, 5, 3, 4, 2)) * torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    ).reshape(2, 5, 3, 8)
    torch.testing.assert_close(apply_rope(x, angles), ref, rtol=1e-6, atol=1e-6)


def test_video_angles_equal_a_brute_force_loop_over_the_grid():
    tower = get_preset("tiny").video  # head 12: time 4 dims, height 4, width 4
    f, h, w = 3, 2, 4
    angles = video_rope_angles(tower, (f, h, w))
    inv_t = rope_inv_freq(tower.rope_time_dims)
    inv_s = rope_inv_freq(tower.rope_space_dims)
    row = 0
    for fi in range(f):
        for hi in range(h):
            for wi in range(w):
                expect = torch.cat([fi * inv_t, hi * inv_s, wi * inv_s]).float()
                torch.testing.assert_close(angles[row], expect)
                row += 1


def test_audio_rope_rotates_only_the_time_slice_and_scales_positions():
    tower = get_preset("ovi").audio
    pos = torch.arange(4, dtype=torch.float64)
    angles = audio_rope_angles(tower, pos)
    assert angles.shape == (4, tower.head_dim // 2)
    assert torch.all(angles[:, tower.rope_time_dims // 2 :] == 0)  # 22 complex pairs rotate, the rest pass
    torch.testing.assert_close(angles[3, 1], (3 * 0.19676 * rope_inv_freq(44)[1]).float())


def test_time_rope_scores_depend_only_on_the_time_difference():
    tower = get_preset("tiny").audio
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, 12, generator=g), torch.randn(1, 1, 1, 12, generator=g)

    def score(pq, pk):
        aq = time_rope_angles(tower, torch.tensor([pq], dtype=torch.float64))
        ak = time_rope_angles(tower, torch.tensor([pk], dtype=torch.float64))
        return (apply_rope(q, aq) * apply_rope(k, ak)).sum()

    torch.testing.assert_close(score(2.5, 1.0), score(7.25, 5.75), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(score(2.5, 1.0), score(2.5, 2.0))


def test_frame_centres_map_to_their_own_index_with_a_causal_first_frame():
    for tl in (TimelineConfig(), TimelineConfig(fps=30.0, vae_time_stride=4), TimelineConfig(causal_first_frame=False)):
        for i in range(8):
            a, b = tl.video_frame_span(i)
            centre = float((a + b) / 2) / tl.fps
            assert abs(float(video_index_at_time(tl, torch.tensor(centre, dtype=torch.float64))) - i) < 1e-9
        t = torch.linspace(0, 2, 200, dtype=torch.float64)
        assert torch.all(torch.diff(video_index_at_time(tl, t)) > 0)


def test_audio_token_centres_map_to_their_own_index():
    tl = TimelineConfig()
    j = torch.arange(20, dtype=torch.float64)
    torch.testing.assert_close(audio_index_at_time(tl, (j + 0.5) / 31.25), j)


def test_audio_at_the_same_moment_as_a_video_frame_gets_that_frames_position():
    tl = TimelineConfig()  # 24 fps, stride 4: latent 3 spans pixel frames [9, 13), centre 11/24 s
    t = torch.tensor(11 / 24, dtype=torch.float64)
    assert abs(float(video_index_at_time(tl, t)) - 3.0) < 1e-12
    assert abs(float(audio_index_at_time(tl, t)) - (11 / 24 * 31.25 - 0.5)) < 1e-12
