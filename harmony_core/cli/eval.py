"""``python -m harmony_core eval``: synchronization of generated clips, text CFG vs SyncCFG on the
same prompts and seeds.

The prompts file is JSON lines. A line is either a synthetic-world scene,
``{"family": "ball", "seed": 7, "params": {...}}`` (caption and transcript come from the scene, so
the ground truth is known), or free text, ``{"prompt": "...", "transcript": "..."}``. Every prompt is
generated once per guidance mode with the same noise seed, measured with
``harmony_core.metrics.sync`` (Sync-C / Sync-D / DeSync analogues), and summarised in a markdown
table per mode and per family.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .common import default_model_path

__all__ = ["build_parser", "load_prompts", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harmony_core eval",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=None, help="Harmony bundle (default: the shipped tiny model)")
    p.add_argument("--prompts", required=True, help="JSON-lines prompts file")
    p.add_argument("--modes", default="cfg,sync",
                   help="comma-separated guidance modes: cfg, sync, sync+text (SyncCFG plus a text-CFG term at "
                   "--text-scale), none")
    p.add_argument("--text-scale", type=float, default=2.0, help="text-CFG scale of the sync+text mode")
    p.add_argument("--task", default="t2av", choices=("t2av", "a2v", "v2a"),
                   help="t2av: generate both streams; a2v / v2a: keep each synthetic scene's true audio / "
                   "video and generate the other stream (measures whether a stream follows the other)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--shift", type=float, default=5.0, help="sampler schedule shift (the paper's: 5)")
    p.add_argument("--video-scale", type=float, default=None, help="video guidance scale (default: 3, the paper's)")
    p.add_argument("--audio-scale", type=float, default=None, help="audio guidance scale (default: 2, the paper's)")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--limit", type=int, default=0, help="only the first N prompts (0 = all)")
    p.add_argument("--save-dir", default=None, help="also write every clip as MP4 here")
    p.add_argument("--json", default=None, help="write per-clip results to this JSON file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--strip", default=None,
                   help="also write a frame strip (.png/.jpg) of the first --strip-clips prompts, one row per mode")
    p.add_argument("--strip-clips", type=int, default=4)
    p.add_argument(
        "--no-references",
        action="store_true",
        help="skip the reference rows of synthetic scenes: 'truth' (the rendered clip itself) and 'vae' "
        "(the clip through the model's own VAEs, the best any generation can score)",
    )
    return p


def scene_clip(item: dict, seconds: float):
    """The rendered synthetic scene of a prompts-file line (``family``, ``seed``, ``params``, ``seconds``)."""
    from ..data.synthetic import generate_clip

    return generate_clip(int(item.get("seed", 0)), family=item["family"], params=item.get("params"),
                         seconds=item.get("seconds", seconds))


def reliance_table(engine, items: list[dict], seconds: float) -> str | None:
    """`harmony_core.metrics.reliance` on the synthetic scenes of ``items`` (each paired with the
    next scene of the same family, so the swapped stream differs in event times, not in kind) and
    the A2V attention profile (`harmony_core.metrics.attention`), or None when fewer than two
    scenes share a family."""
    import torch

    from ..metrics.reliance import cross_modal_reliance, format_reliance

    scenes = [it for it in items if "family" in it]
    by_family: dict[str, list[int]] = {}
    for i, it in enumerate(scenes):
        by_family.setdefault(it["family"], []).append(i)
    partner = [0] * len(scenes)
    for members in by_family.values():
        for k, i in enumerate(members):
            partner[i] = members[(k + 1) % len(members)]
    if len(scenes) < 2 or any(partner[i] == i for i in range(len(scenes))):
        return None
    clips = [scene_clip(it, seconds) for it in scenes]
    n = min(c.frames.shape[0] for c in clips)
    frames = [engine.fit_frames(c.frames[:n], c.fps) for c in clips]
    v_x0 = torch.cat([engine.encode_video(f) for f in frames])
    t_a = engine.latent_shapes(frames[0].shape[0], *engine.resolution, 1)[1][2]
    a_x0 = torch.cat([engine.encode_audio(c.waveform[None], c.sample_rate, num_latents=t_a) for c in clips])
    cond = engine.encode_text([c.caption for c in clips], [c.transcript or "" for c in clips])
    dit = engine.bundle.dit
    rows = cross_modal_reliance(dit, v_x0, a_x0, cond, partner=partner, generator=torch.Generator().manual_seed(0))
    table = format_reliance(rows)
    if dit.config.interaction.local:  # where each video frame listens (A2V task, video at sigma 0.6)
        from ..metrics.attention import a2v_attention_profile, format_a2v_profile

        b, sigma = v_x0.shape[0], 0.6
        noise = torch.randn(v_x0.shape, generator=torch.Generator().manual_seed(1))
        profile = a2v_attention_profile(dit, (1 - sigma) * v_x0 + sigma * noise, a_x0, torch.full((b,), sigma),
                                        torch.zeros(b), cond)
        table += ("\n\nA2V attention by the audio's time offset from the video frame (1 = the frame averages its "
                  "window; offsets in audio latents):\n" + format_a2v_profile(profile))
    return table


def reference_reports(engine, item: dict, seconds: float):
    """Sync reports of a synthetic scene's ground truth and of its VAE round trip.

    The round trip (video and audio each encoded and decoded by the model's VAEs) bounds what a
    generation can score: events the VAEs blur cannot be in sync after decoding either.

    Returns:
        ``(truth, vae)`` `SyncReport`s.
    """
    from ..metrics.sync import sync_report

    clip = scene_clip(item, seconds)
    truth = sync_report(clip.frames, clip.waveform, fps=clip.fps, sample_rate=clip.sample_rate)
    frames = engine.fit_frames(clip.frames, clip.fps)
    v_hat = engine.decode_video(engine.encode_video(frames))[0]
    a_hat = engine.decode_audio(engine.encode_audio(clip.waveform[None], clip.sample_rate))[0]
    vae = sync_report(v_hat, a_hat, fps=engine.fps, sample_rate=engine.sample_rate)
    return truth, vae


def load_prompts(path: str) -> list[dict]:
    """Read and validate the prompts file; synthetic scenes get their caption and transcript."""
    from ..data.synthetic import describe

    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n} is not valid JSON ({e}); one JSON object per line.") from e
        if "family" in item:
            spec = describe(
                int(item.get("seed", n)), family=item["family"], params=item.get("params"), seconds=item.get("seconds")
            )
            item = {**item, "prompt": spec.caption, "transcript": spec.transcript}
        if not isinstance(item.get("prompt"), str):
            raise ValueError(f"{path}:{n} needs a 'prompt' string or a synthetic 'family'.")
        out.append(item)
    if not out:
        raise ValueError(f"{path} has no prompts.")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..engine import HarmonyEngine
    from ..io.media import write_mp4
    from ..metrics.sync import aggregate, format_table, sync_report
    from .generate import guidance_from_args

    prompts = load_prompts(args.prompts)
    if args.limit:
        prompts = prompts[: args.limit]
    if args.task != "t2av":
        texts = [it["prompt"] for it in prompts if "family" not in it]
        if texts:
            raise ValueError(f"--task {args.task} keeps a synthetic scene's true "
                             f"{'audio' if args.task == 'a2v' else 'video'}, but {len(texts)} prompt(s) are free "
                             f"text (first: {texts[0]!r}); use a prompts file of synthetic scenes or --task t2av.")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    from .generate import GUIDANCE_MODES

    unknown = [m for m in modes if m not in GUIDANCE_MODES]
    if unknown:
        raise ValueError(f"--modes {args.modes!r}: {unknown[0]!r} is unknown; expected a comma-separated list of "
                         f"{', '.join(GUIDANCE_MODES)}.")
    engine = HarmonyEngine.from_file(args.model or default_model_path(), device=args.device)
    rows, per_clip, strips = [], [], []
    t0 = time.perf_counter()
    for mode in modes:
        reports, by_family = [], {}
        for i, item in enumerate(prompts):
            seed = int(item.get("seed", i))
            source = {}
            if args.task != "t2av":
                clip = scene_clip(item, args.seconds)
                source = ({"audio": (clip.waveform[None], clip.sample_rate)} if args.task == "a2v"
                          else {"video": (clip.frames, clip.fps)})
            out = engine.generate(
                item["prompt"],
                mode=args.task,
                **source,
                transcript=item.get("transcript", ""),
                seconds=float(item.get("seconds", args.seconds)),
                guidance=guidance_from_args(mode, args.video_scale, args.audio_scale, args.text_scale),
                steps=args.steps,
                shift=args.shift,
                seed=seed,
            )
            rep = sync_report(out.frames[0], out.waveform[0, 0], fps=out.fps, sample_rate=out.sample_rate)
            reports.append(rep)
            by_family.setdefault(item.get("family", "text"), []).append(rep)
            per_clip.append(
                {
                    "mode": mode,
                    "task": args.task,
                    "prompt": item["prompt"],
                    "seed": seed,
                    "family": item.get("family"),
                    "offset_s": rep.offset_s,
                    "confidence": rep.confidence,
                    "distance": rep.distance,
                }
            )
            if args.strip and i < args.strip_clips:
                from ..io.strip import frame_strip

                strips.append(frame_strip(out.frames[0], fps=out.fps, waveform=out.waveform[0],
                                          sample_rate=out.sample_rate, every=3, max_frames=16, scale=1))
            if args.save_dir:
                Path(args.save_dir).mkdir(parents=True, exist_ok=True)
                write_mp4(
                    Path(args.save_dir) / f"{mode}_{i:03d}.mp4",
                    out.frames[0],
                    out.fps,
                    out.waveform[0],
                    out.sample_rate,
                )
        rows.append({"guidance": mode, "family": "all", "clips": len(reports), **aggregate(reports)})
        for fam, reps in sorted(by_family.items()):
            rows.append({"guidance": mode, "family": fam, "clips": len(reps), **aggregate(reps)})
    if not args.no_references:
        refs: dict[str, dict[str, list]] = {"truth": {}, "vae": {}}
        for item in prompts:
            if "family" in item:
                for name, rep in zip(("truth", "vae"), reference_reports(engine, item, args.seconds)):
                    refs[name].setdefault(item["family"], []).append(rep)
        for name, by_family in refs.items():
            if by_family:
                every = [r for reps in by_family.values() for r in reps]
                rows.append({"guidance": f"({name})", "family": "all", "clips": len(every), **aggregate(every)})
                for fam, reps in sorted(by_family.items()):
                    rows.append({"guidance": f"({name})", "family": fam, "clips": len(reps), **aggregate(reps)})
    if not args.no_references:
        table = reliance_table(engine, prompts, args.seconds)
        if table:
            print("Cross-modal reliance (does each stream use the other? 0 % = ignored):\n" + table + "\n")
    if strips:
        from ..io.strip import save_image, stack_strips

        save_image(args.strip, stack_strips(strips))
    print(format_table(rows))
    print(f"\n{args.task}: {len(prompts)} prompts x {len(modes)} modes, {args.steps} steps, shift {args.shift:g}, "
          f"in {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": rows, "clips": per_clip}, indent=1))
    return 0
