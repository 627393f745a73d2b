"""``python -m harmony_core generate``: a synchronized clip with sound, written as an MP4.

Examples::

    python -m harmony_core generate --prompt "a small red ball bouncing on a grey floor" --out ball.mp4
    python -m harmony_core generate --prompt "a green cartoon face speaks" --transcript "hello mama" --out face.mp4
    python -m harmony_core generate --mode a2v --audio voice.wav --prompt "a cartoon face speaking" --out a2v.mp4
    python -m harmony_core generate --mode v2a --video clip.mp4 --prompt "drum hits" --out v2a.mp4
"""

from __future__ import annotations

import argparse
import logging
import time

from .common import default_model_path, progress_callback

__all__ = ["GUIDANCE_MODES", "build_parser", "guidance_from_args", "main"]

GUIDANCE_MODES = ("sync", "cfg", "sync+text", "none")

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harmony_core generate",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--prompt", required=True, help="what to see and hear")
    p.add_argument("--transcript", default="", help="words to speak (empty: nobody speaks)")
    p.add_argument("--seconds", type=float, default=2.0, help="clip length (t2av / a2v)")
    p.add_argument(
        "--mode",
        choices=("t2av", "a2v", "v2a"),
        default="t2av",
        help="t2av: text to video+sound; a2v: keep --audio, draw video; v2a: keep --video, add sound",
    )
    p.add_argument("--audio", help="input audio or video file with sound (a2v)")
    p.add_argument("--video", help="input video file (v2a)")
    p.add_argument(
        "--guidance",
        choices=GUIDANCE_MODES,
        default="sync",
        help="sync: SyncCFG (paper scales 3/2); cfg: text CFG against an empty prompt; sync+text: SyncCFG plus a "
        "text-CFG term (--text-scale, beyond the paper); none",
    )
    p.add_argument("--text-scale", type=float, default=2.0, help="text-CFG scale of --guidance sync+text")
    p.add_argument("--video-scale", type=float, default=None, help="override the video guidance scale")
    p.add_argument("--audio-scale", type=float, default=None, help="override the audio guidance scale")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--sampler", choices=("unipc", "euler", "heun"), default="unipc")
    p.add_argument("--shift", type=float, default=5.0, help="schedule shift")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="Harmony bundle (default: the shipped tiny model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--strip", default=None, help="also write a frame strip with the audio envelope (.png/.jpg)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def guidance_from_args(kind: str, video: float | None, audio: float | None, text: float = 2.0):
    """The ``GuidanceConfig`` of a CLI guidance mode; ``video`` / ``audio`` override its two scales
    (default 3 / 2, the paper's), ``text`` is the text-CFG scale of ``sync+text``."""
    from ..sampling.guidance import GuidanceConfig

    scales = {"video": 3.0 if video is None else video, "audio": 2.0 if audio is None else audio}
    if kind == "sync":
        return GuidanceConfig.sync(**scales)
    if kind == "cfg":
        return GuidanceConfig.text_cfg(**scales)
    if kind == "sync+text":  # beyond the paper: SyncCFG plus a text-CFG term against the empty prompt
        return GuidanceConfig.sync(**scales, video_text_scale=text, audio_text_scale=text)
    if kind == "none":
        return GuidanceConfig.none()
    raise ValueError(f"guidance {kind!r} is unknown: expected one of {GUIDANCE_MODES}.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..engine import HarmonyEngine
    from ..io.media import read_audio, read_video, write_mp4

    if args.mode == "a2v" and not args.audio:
        raise SystemExit("--mode a2v keeps a given sound and draws the video: pass --audio FILE.")
    if args.mode == "v2a" and not args.video:
        raise SystemExit("--mode v2a keeps a given video and adds sound: pass --video FILE.")
    t0 = time.perf_counter()
    engine = HarmonyEngine.from_file(args.model or default_model_path(), device=args.device)
    audio = read_audio(args.audio, max_seconds=args.seconds + 1) if args.mode == "a2v" else None
    video = None
    if args.mode == "v2a":
        frames, fps, _ = read_video(args.video, max_seconds=10.0)
        video = (frames, fps)
    callback, bar = progress_callback(args.steps, f"{args.mode} {args.guidance}", disable=args.quiet)
    try:
        out = engine.generate(
            args.prompt,
            transcript=args.transcript,
            seconds=args.seconds,
            mode=args.mode,
            audio=audio,
            video=video,
            guidance=guidance_from_args(args.guidance, args.video_scale, args.audio_scale, args.text_scale),
            steps=args.steps,
            sampler=args.sampler,
            shift=args.shift,
            seed=args.seed,
            callback=callback,
        )
    finally:
        bar.close()
    write_mp4(args.out, out.frames[0], out.fps, out.waveform[0], out.sample_rate)
    if args.strip:
        from ..io.strip import frame_strip, save_image

        save_image(args.strip, frame_strip(out.frames[0], fps=out.fps, waveform=out.waveform[0],
                                           sample_rate=out.sample_rate))
    seconds = out.frames.shape[1] / out.fps
    print(
        f"wrote {args.out}: {out.frames.shape[1]} frames at {out.fps:g} fps ({seconds:.2f} s), "
        f"{out.frames.shape[3]}x{out.frames.shape[2]}, audio {out.sample_rate} Hz, "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0
