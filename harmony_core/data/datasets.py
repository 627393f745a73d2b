"""Datasets of :class:`~.clip.Clip`: the seeded synthetic world and a folder of the user's own videos.

Both return clips on the same time geometry as :mod:`.synthetic`: ``T = 1 + 4k`` pixel frames at
``fps`` and ``S = round(T / fps * sample_rate)`` mono samples covering exactly the same span.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .clip import Clip
from .synthetic import WorldConfig, generate_clip, num_samples_for_frames

__all__ = ["VIDEO_EXTENSIONS", "FolderAVDataset", "SyntheticAVDataset", "load_av_file"]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".mov")
_NO_AUDIO_FIX = (
    "Add a soundtrack (for silence: ffmpeg -i in.mp4 -f lavfi -i anullsrc=r=16000:cl=mono -shortest "
    "-c:v copy -c:a aac out.mp4) or remove the file from the folder."
)


# Synthetic --------------------------------------------------------------------------------------


class SyntheticAVDataset(Dataset):
    """``length`` synthetic clips; item ``i`` is ``generate_clip(base_seed + i, ...)``.

    Args:
        length: number of clips.
        base_seed: seed of item 0.
        seconds: fixed duration for every clip (equal shapes, easy batching); ``None`` draws one per clip.
        family: fixed family; ``None`` draws one per clip from ``config.families``.
        config: the world configuration (default :class:`~.synthetic.WorldConfig`).
    """

    def __init__(
        self,
        length: int,
        *,
        base_seed: int = 0,
        seconds: float | None = None,
        family: str | None = None,
        config: WorldConfig | None = None,
    ) -> None:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length={length!r} is invalid: expected an int >= 1 (number of clips).")
        if not isinstance(base_seed, int) or base_seed < 0:
            raise ValueError(f"base_seed={base_seed!r} is invalid: expected an int >= 0.")
        self.length, self.base_seed, self.seconds, self.family = length, base_seed, seconds, family
        self.config = config or WorldConfig()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Clip:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for SyntheticAVDataset of length {self.length}.")
        return generate_clip(
            self.base_seed + index % self.length, family=self.family, seconds=self.seconds, config=self.config
        )


# Real videos ------------------------------------------------------------------------------------


def _read_captions(root: Path, videos: list[Path]) -> dict[str, tuple[str, str]]:
    """``{file name: (caption, transcript)}`` from ``captions.jsonl`` and ``<stem>.txt`` sidecars."""
    out: dict[str, tuple[str, str]] = {}
    jsonl = root / "captions.jsonl"
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[str(row["file"])] = (str(row["caption"]), str(row.get("transcript", "") or ""))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{jsonl}:{n} is not a caption record ({err}): expected "
                    f'{{"file": "clip.mp4", "caption": "...", "transcript": "..."}}.'
                ) from err
    for v in videos:
        if v.name in out:
            continue
        side = v.with_suffix(".txt")
        if side.is_file():
            spoken = v.with_suffix(".transcript.txt")
            transcript = spoken.read_text(encoding="utf-8").strip() if spoken.is_file() else ""
            out[v.name] = (side.read_text(encoding="utf-8").strip(), transcript)
    return out


class FolderAVDataset(Dataset):
    """The videos of a folder (mp4/mkv/webm/mov) with their captions, as :class:`~.clip.Clip` s.

    Captions come from ``captions.jsonl`` in the folder (one ``{"file", "caption", "transcript"}``
    record per line, ``transcript`` optional) or from sidecars: ``<name>.txt`` holds the caption and
    optional ``<name>.transcript.txt`` the spoken words. Every video needs a caption and an audio
    stream. Decoding happens in ``__getitem__`` (see :func:`load_av_file`).

    Args:
        root: the folder (not searched recursively).
        fps: target frame rate.
        sample_rate: target audio rate in Hz.
        height: target H in pixels.
        width: target W in pixels.
        max_seconds: crop every clip to at most this long (``None`` keeps the whole file).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: float = 24.0,
        sample_rate: int = 16000,
        height: int = 64,
        width: int = 64,
        max_seconds: float | None = None,
    ) -> None:
        self.kwargs: dict[str, Any] = {
            "fps": fps,
            "sample_rate": sample_rate,
            "height": height,
            "width": width,
            "max_seconds": max_seconds,
        }
        _check_targets(**self.kwargs)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(
                f"video folder {str(self.root)!r} does not exist or is not a folder. Pass the folder "
                f"that holds your video files."
            )
        self.videos = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not self.videos:
            raise ValueError(
                f"no videos in {str(self.root)!r}: expected files ending in {VIDEO_EXTENSIONS}. "
                f"Put your clips directly in that folder."
            )
        self.captions = _read_captions(self.root, self.videos)
        missing = [v.name for v in self.videos if v.name not in self.captions]
        if missing:
            raise ValueError(
                f"{len(missing)} video(s) in {str(self.root)!r} have no caption, e.g. {missing[:3]}. "
                f"Add <name>.txt next to each video or a line in captions.jsonl."
            )

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> Clip:
        path = self.videos[index]
        caption, transcript = self.captions[path.name]
        return load_av_file(path, caption=caption, transcript=transcript, **self.kwargs)


def _check_targets(fps: float, sample_rate: int, height: int, width: int, max_seconds: float | None) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps={fps!r} is invalid: expected a finite number > 0, e.g. 24.0.")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r} is invalid: expected an int > 0, e.g. 16000.")
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise ValueError(f"height={height!r}, width={width!r} are invalid: expected ints > 0, e.g. 64.")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds={max_seconds!r} is invalid: expected > 0 or None (whole file).")


def _cover_resize(rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``[h, w, 3]`` uint8 -> ``[H, W, 3]`` float32: scale to cover the target, then centre-crop."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255.0  # [1, 3, h, w]
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return x[0, :, top : top + height, left : left + width].permute(1, 2, 0).clamp(0.0, 1.0)


def _decode(
    path: Path, height: int, width: int, limit: float
) -> tuple[list[torch.Tensor], list[float], np.ndarray, int, float]:
    """Frames (resized), their times, mono audio, its rate and its start time, up to ``limit`` seconds."""
    import av  # lazy: only real-video users need PyAV

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"cannot open video file {path.name!r} ({err}). Check that it plays, or remove it.") from err
    with container:
        if not container.streams.video:
            raise ValueError(f"{path.name!r} has no video stream. Remove it from the folder.")
        if not container.streams.audio:
            raise ValueError(
                f"{path.name!r} has no audio stream: FolderAVDataset needs video with sound. " + _NO_AUDIO_FIX
            )
        v_stream, a_stream = container.streams.video[0], container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # float planar, same layout and rate
        frames: list[torch.Tensor] = []
        times: list[float] = []
        chunks: list[np.ndarray] = []
        a_start, a_rate, a_samples = None, a_stream.rate, 0
        v_done = a_done = False
        try:
            for packet in container.demux(v_stream, a_stream):
                for frame in packet.decode():
                    t = float(frame.time) if frame.time is not None else None
                    if isinstance(frame, av.VideoFrame):
                        if t is None:
                            t = times[-1] + 1.0 / float(v_stream.average_rate or 25) if times else 0.0
                        if times and t - times[0] > limit:
                            v_done = True
                            continue
                        frames.append(_cover_resize(frame.to_ndarray(format="rgb24"), height, width))
                        times.append(t)
                    else:
                        if a_start is None:
                            a_start = t if t is not None else 0.0
                        for f2 in resampler.resample(frame):
                            a_rate = f2.sample_rate
                            chunks.append(f2.to_ndarray().mean(axis=0))
                            a_samples += f2.samples
                        a_done = a_samples / a_rate > limit + 1.0
                if v_done and a_done:
                    break
            chunks.extend(f2.to_ndarray().mean(axis=0) for f2 in resampler.resample(None))  # flush
        except av.error.FFmpegError as err:
            raise ValueError(f"cannot decode video file {path.name!r} ({err}). Re-encode it or remove it.") from err
    if not frames:
        raise ValueError(f"{path.name!r} has no decodable video frames. Re-encode it or remove it.")
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return frames, times, audio, int(a_rate), float(a_start or 0.0)


def _nearest(source: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the source time nearest to each target time (ties to the earlier frame)."""
    if len(source) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    hi = np.clip(np.searchsorted(source, targets), 1, len(source) - 1)
    return np.where(np.abs(source[hi - 1] - targets) <= np.abs(source[hi] - targets), hi - 1, hi)


def load_av_file(
    path: str | Path,
    *,
    fps: float = 24.0,
    sample_rate: int = 16000,
    height: int = 64,
    width: int = 64,
    max_seconds: float | None = None,
    caption: str = "",
    transcript: str = "",
) -> Clip:
    """Decode a video file with sound into a :class:`~.clip.Clip` on the synthetic world's geometry.

    Frames are resized to cover ``height x width`` and centre-cropped; the frame rate is changed by
    picking the source frame nearest to each target instant ``i / fps``; audio is mixed to mono and
    resampled to ``sample_rate``. The clip is trimmed to the longest ``T = 1 + 4k`` frames that both
    streams cover (and ``max_seconds``), with ``S = round(T / fps * sample_rate)`` samples.

    Args:
        path: the video file.
        fps: target frame rate.
        sample_rate: target audio rate in Hz.
        height: target H.
        width: target W.
        max_seconds: crop to at most this long; ``None`` keeps the whole file.
        caption: stored on the clip.
        transcript: stored on the clip.

    Returns:
        ``Clip(family="real")`` with ``frames [T, H, W, 3]`` float32 in 0..1 and ``waveform [S]`` float32.

    Raises:
        ValueError: if the file cannot be read, has no audio stream, or is too short.
    """
    import torchaudio.functional as AF

    path = Path(path)
    _check_targets(fps, sample_rate, height, width, max_seconds)
    if not path.is_file():
        raise ValueError(f"video file {str(path)!r} does not exist.")
    frames, times, audio, src_rate, a_start = _decode(path, height, width, (max_seconds or math.inf) + 0.5)
    rel = np.asarray(times) - times[0]
    step = float(np.median(np.diff(rel))) if len(rel) > 1 else 1.0 / fps
    # Put audio on the video's clock: drop or pad what precedes the first video frame.
    shift = int(round((a_start - times[0]) * src_rate))
    audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
    duration = min(rel[-1] + step, len(audio) / src_rate, max_seconds or math.inf)
    available = math.floor(duration * fps + 1e-6)
    if available < 1:
        raise ValueError(f"{path.name!r} is too short ({duration:.3f} s) for one frame at {fps} fps.")
    num_frames = 1 + 4 * ((available - 1) // 4)
    video = torch.stack([frames[i] for i in _nearest(rel, np.arange(num_frames) / fps)])

    num_samples = num_samples_for_frames(num_frames, fps, sample_rate)
    wave = torch.from_numpy(np.ascontiguousarray(audio))
    if src_rate != sample_rate:
        wave = AF.resample(wave, src_rate, sample_rate)
    wave = F.pad(wave[:num_samples], (0, max(0, num_samples - wave.shape[0]))).clamp(-1.0, 1.0)
    log.debug("loaded %s: %d frames, %d samples (source %d Hz)", path.name, num_frames, num_samples, src_rate)
    return Clip(
        frames=video.contiguous(),
        waveform=wave.contiguous(),
        fps=fps,
        sample_rate=sample_rate,
        caption=caption,
        transcript=transcript,
        family="real",
        params={"file": path.name, "source_fps": round(1.0 / step, 4), "source_sample_rate": src_rate},
    )
