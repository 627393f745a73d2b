"""Reading and writing media files through PyAV: MP4 (H.264 video + AAC audio) out, any video or
audio file in.

Layouts: frames ``[T, H, W, 3]`` float in 0..1; waveforms ``[C, S]`` float in -1..1.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch

__all__ = ["write_mp4", "read_video", "read_audio", "probe_streams"]


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a dependency
        raise ImportError("reading/writing media needs PyAV: pip install av") from e
    return av


def write_mp4(
    path: str | os.PathLike[str],
    frames: torch.Tensor,
    fps: float,
    waveform: torch.Tensor | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
) -> None:
    """Write an MP4 with an H.264 (yuv420p) video stream and, if given, an AAC audio stream.

    Args:
        path: output file (``.mp4``); written to a temporary name first, then renamed.
        frames: ``[T, H, W, 3]`` float in 0..1 (H and W are padded to even sizes for yuv420p).
        fps: frame rate.
        waveform: ``[C, S]`` or ``[S]`` float in -1..1, trimmed or zero-padded to the video's length.
        sample_rate: the waveform's rate in Hz.
        crf: H.264 quality (lower is better; 18 is visually lossless for these sizes).
    """
    av = _av()
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames have shape {tuple(frames.shape)}: expected [T, H, W, 3] in 0..1.")
    if not fps > 0:
        raise ValueError(f"fps={fps} is invalid: expected > 0.")
    if waveform is not None and not (sample_rate and sample_rate > 0):
        raise ValueError(f"sample_rate={sample_rate!r} is invalid: pass the waveform's rate in Hz.")
    x = (frames.detach().float().nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    t, h, w, _ = x.shape
    if h % 2 or w % 2:  # yuv420p needs even sizes
        x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp_{os.path.basename(path)}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(tmp, mode="w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = x.shape[2], x.shape[1], "yuv420p"
        vs.options = {"crf": str(crf)}
        astream = None
        if waveform is not None:
            wav = waveform.detach().float().cpu()
            wav = wav[None] if wav.dim() == 1 else wav
            if wav.dim() != 2 or wav.shape[0] not in (1, 2):
                raise ValueError(
                    f"waveform has shape {tuple(waveform.shape)}: expected [S] or [C, S] with C in (1, 2)."
                )
            n = round(t / fps * sample_rate)
            wav = torch.nn.functional.pad(wav, (0, max(0, n - wav.shape[1])))[:, :n]
            wav = wav.nan_to_num(0.0).clamp(-1, 1).contiguous().numpy()
            astream = container.add_stream("aac", rate=int(sample_rate))
            astream.layout = "mono" if wav.shape[0] == 1 else "stereo"
        for i in range(t):
            for packet in vs.encode(av.VideoFrame.from_ndarray(x[i], format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        if astream is not None:
            frame = av.AudioFrame.from_ndarray(wav, format="fltp", layout=astream.layout.name)
            frame.sample_rate = int(sample_rate)
            frame.pts = 0
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    os.replace(tmp, path)


def read_video(
    path: str | os.PathLike[str], *, max_seconds: float | None = None
) -> tuple[torch.Tensor, float, tuple[torch.Tensor, int] | None]:
    """Decode a video file.

    Returns:
        ``(frames [T, H, W, 3] float32 0..1, fps, audio)`` where audio is ``(waveform [C, S], rate)``
        or None when the file has no audio stream.
    """
    av = _av()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file {path!r} does not exist.")
    try:
        container = av.open(path)
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot open {path!r} as a video ({e}); check that it plays.") from e
    with container:
        if not container.streams.video:
            raise ValueError(f"{path!r} has no video stream.")
        vs = container.streams.video[0]
        fps = float(vs.average_rate or vs.guessed_rate or 24)
        frames = []
        for frame in container.decode(vs):
            if max_seconds is not None and len(frames) >= max_seconds * fps:
                break
            frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
    if not frames:
        raise ValueError(f"{path!r} has no decodable video frames; re-encode it.")
    audio = None
    try:
        audio = read_audio(path, max_seconds=max_seconds)
    except ValueError:
        audio = None
    return torch.stack(frames).float() / 255.0, fps, audio


def read_audio(path: str | os.PathLike[str], *, max_seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of any media file -> ``(waveform [C, S] float32, rate)``."""
    av = _av()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file {path!r} does not exist.")
    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path!r} has no audio stream.")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        chunks, rate = [], stream.rate
        for frame in container.decode(stream):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray())
                rate = f.sample_rate
            if max_seconds is not None and sum(c.shape[1] for c in chunks) >= max_seconds * rate:
                break
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray())
    if not chunks:
        raise ValueError(f"{path!r} has an empty audio stream.")
    wav = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32))
    if max_seconds is not None:
        wav = wav[:, : int(max_seconds * rate)]
    return wav, int(rate)


def probe_streams(path: str | os.PathLike[str]) -> dict[str, object]:
    """Codec names and sizes of a media file's streams (for tests and reports)."""
    av = _av()
    with av.open(os.fspath(path)) as c:
        out: dict[str, object] = {"duration_s": float(c.duration / 1e6) if c.duration else None}
        if c.streams.video:
            v = c.streams.video[0]
            out["video"] = {
                "codec": v.codec_context.name,
                "width": v.width,
                "height": v.height,
                "fps": float(v.average_rate or 0),
                "frames": v.frames,
            }
        if c.streams.audio:
            a = c.streams.audio[0]
            out["audio"] = {"codec": a.codec_context.name, "sample_rate": a.rate, "channels": a.channels}
        return out
