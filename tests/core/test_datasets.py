"""Datasets: the seeded synthetic world and folders of real videos decoded with PyAV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harmony_core.data.datasets import FolderAVDataset, SyntheticAVDataset, load_av_file
from harmony_core.data.synthetic import generate_clip

av = pytest.importorskip("av")

SRC_FPS, SRC_RATE, SECONDS = 25, 44100, 2.0
BURST_AT = 1.0  # s: a loud square-wave burst in the source audio, to check audio/video alignment


def write_video(path: Path, *, audio: bool = True, codec: str = "h264") -> None:
    """96x72 video whose frame i is the flat grey level 20 + 4 i, with a 440 Hz stereo tone and a burst."""
    with av.open(str(path), "w") as container:
        v_stream = container.add_stream(codec, rate=SRC_FPS)
        v_stream.width, v_stream.height, v_stream.pix_fmt = 96, 72, "yuv420p"
        if audio:
            a_stream = container.add_stream("aac", rate=SRC_RATE)
            a_stream.layout = "stereo"
        for i in range(int(SECONDS * SRC_FPS)):
            image = np.full((72, 96, 3), 20 + 4 * i, np.uint8)
            for packet in v_stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in v_stream.encode():
            container.mux(packet)
        if audio:
            t = np.arange(int(SECONDS * SRC_RATE)) / SRC_RATE
            x = 0.3 * np.sin(2 * np.pi * 440.0 * t)
            burst = (t >= BURST_AT) & (t < BURST_AT + 0.05)
            x[burst] += 0.5 * np.sign(np.sin(2 * np.pi * 3000.0 * t[burst]))
            stereo = np.stack([x, x]).astype(np.float32)
            for k in range(0, stereo.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(stereo[:, k : k + 1024]), format="fltp", layout="stereo"
                )
                frame.sample_rate, frame.pts = SRC_RATE, k
                for packet in a_stream.encode(frame):
                    container.mux(packet)
            for packet in a_stream.encode():
                container.mux(packet)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "tone.mp4")
    (root / "tone.txt").write_text("a grey screen slowly brightening while a tone plays\n")
    (root / "tone.transcript.txt").write_text("hello there\n")
    return root


# Synthetic --------------------------------------------------------------------------------------------


def test_synthetic_dataset_item_i_is_the_clip_of_seed_base_plus_i() -> None:
    data = SyntheticAVDataset(3, base_seed=10, seconds=1.0)
    assert len(data) == 3
    for i in range(3):
        want = generate_clip(10 + i, seconds=1.0)
        got = data[i]
        assert torch.equal(got.frames, want.frames) and torch.equal(got.waveform, want.waveform)
        assert got.caption == want.caption
    assert {data[i].num_frames for i in range(3)} == {25}  # 1 s at 24 fps -> 1 + 4 * 6 frames
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(ValueError, match="length=0"):
        SyntheticAVDataset(0)


# Folder -----------------------------------------------------------------------------------------------


def test_folder_video_is_resampled_to_24_fps_16_khz_and_64_by_64(video_folder: Path) -> None:
    data = FolderAVDataset(video_folder)
    assert len(data) == 1
    clip = data[0]
    # 2 s at 24 fps gives 48 frames; the longest 1 + 4k count that fits is 45.
    assert clip.frames.shape == (45, 64, 64, 3) and clip.frames.dtype == torch.float32
    assert clip.waveform.shape == (round(45 / 24 * 16000),) and clip.waveform.dtype == torch.float32
    assert (clip.fps, clip.sample_rate, clip.family) == (24.0, 16000, "real")
    assert clip.caption == "a grey screen slowly brightening while a tone plays"
    assert clip.transcript == "hello there"
    # Each 24 fps frame shows the 25 fps source frame nearest to its instant (frame i: level 20 + 4 i).
    source_index = (clip.frames.mean(dim=(1, 2, 3)).numpy() * 255 - 20) / 4
    exact = np.arange(45) / 24 * SRC_FPS  # source-frame position of each target instant
    error = np.minimum(np.abs(source_index - np.floor(exact)), np.abs(source_index - np.ceil(exact)))
    nearest_error = np.abs(source_index - np.round(exact))
    tie = np.isclose(exact % 1.0, 0.5)  # equidistant source frames: either is right
    assert np.where(tie, error, nearest_error).max() < 0.5
    # Mono 440 Hz tone at 16 kHz, burst still at 1.0 s (audio stays aligned with video).
    x = clip.waveform.numpy()
    spectrum = np.abs(np.fft.rfft(x[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over one second
    assert abs(np.argmax(x**2 > 0.2) / 16000 - BURST_AT) < 0.005


def test_folder_reads_captions_jsonl_and_crops_to_max_seconds(tmp_path: Path) -> None:
    write_video(tmp_path / "b.mp4", codec="mpeg4")
    lines = [{"file": "b.mp4", "caption": "a brightening screen", "transcript": ""}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    clip = FolderAVDataset(tmp_path, max_seconds=1.0, height=32, width=48, sample_rate=8000)[0]
    assert clip.frames.shape == (21, 32, 48, 3)  # 1 s at 24 fps: 24 frames -> 21 = 1 + 4 * 5
    assert clip.waveform.shape == (round(21 / 24 * 8000),)
    assert clip.caption == "a brightening screen" and clip.transcript == ""


def test_a_video_without_audio_names_the_file_and_the_fix(tmp_path: Path) -> None:
    write_video(tmp_path / "silent.mp4", audio=False)
    (tmp_path / "silent.txt").write_text("no sound")
    with pytest.raises(ValueError, match=r"'silent.mp4' has no audio stream.*Add a soundtrack"):
        FolderAVDataset(tmp_path)[0]


def test_folder_problems_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        FolderAVDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no videos"):
        FolderAVDataset(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    with pytest.raises(ValueError, match="have no caption"):
        FolderAVDataset(tmp_path)
    (tmp_path / "broken.txt").write_text("garbage")
    with pytest.raises(ValueError, match="broken.mp4"):
        FolderAVDataset(tmp_path)[0]
    (tmp_path / "captions.jsonl").write_text('{"caption": "no file key"}\n')
    with pytest.raises(ValueError, match=r"captions.jsonl:1"):
        FolderAVDataset(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_av_file(tmp_path / "nope.mp4")
