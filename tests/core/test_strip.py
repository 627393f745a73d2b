"""Frame strips: frames in a row with the audio envelope on the same time axis."""

from __future__ import annotations

import pytest
import torch

from harmony_core.io.strip import frame_strip, save_image, stack_strips


def _clip(fps=24, seconds=1.0, sr=16000, click_at=0.5):
    t = int(fps * seconds) + 1
    frames = torch.zeros(t, 8, 8, 3)
    wav = torch.zeros(int(sr * seconds))
    wav[int(click_at * sr) : int(click_at * sr) + 200] = 0.9
    return frames, wav


def test_the_envelope_peaks_under_the_frame_of_the_sound():
    frames, wav = _clip(click_at=0.5)
    img = frame_strip(frames, fps=24, waveform=wav, sample_rate=16000, every=3, max_frames=8, scale=1,
                      envelope_height=10)
    # 8 tiles of 8 px stand for frames 0..23 (1 s), so 0.5 s is pixel column 32.
    assert img.shape == (8 + 10, 64, 3) and img.dtype == torch.uint8
    band = img[8:]
    lit = (band[-1, :, 1] == 220).nonzero().flatten()  # green bottom row = non-silent columns
    assert lit.numel() >= 1 and abs(lit.float().mean().item() - 32) <= 1.5


def test_frames_are_upscaled_and_stacked_strips_pad_to_the_widest():
    frames, wav = _clip()
    a = frame_strip(frames, fps=24, every=6, max_frames=3, scale=2)
    b = frame_strip(frames, fps=24, every=6, max_frames=2, scale=2)
    assert a.shape == (16, 48, 3) and b.shape == (16, 32, 3)
    s = stack_strips([a, b], gap=2)
    assert s.shape == (34, 48, 3) and (s[18:, 32:] == 255).all()


def test_bad_inputs_name_the_value(tmp_path):
    frames, wav = _clip()
    with pytest.raises(ValueError, match=r"frames=\(8, 8, 3\)"):
        frame_strip(frames[0], fps=24)
    with pytest.raises(ValueError, match="sample_rate=None"):
        frame_strip(frames, fps=24, waveform=wav)
    with pytest.raises(ValueError, match="every=0"):
        frame_strip(frames, fps=24, every=0)
    img = frame_strip(frames, fps=24, waveform=wav, sample_rate=16000)
    save_image(tmp_path / "s.png", img)
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (img.shape[1], img.shape[0])
