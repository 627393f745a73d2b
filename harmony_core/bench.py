"""Per-denoising-step cost of the guidance modes: ``python -m harmony_core.bench``.

For the ``tiny`` and ``mid`` presets it times one denoising step (the guided denoiser call a
sampler makes per step) with: the plain joint pass, text CFG (joint + negative prompt), SyncCFG with
its three passes batched into one forward, and SyncCFG run as three sequential forwards. It prints
milliseconds per step, the ratios between modes, and the achieved GFLOP/s (FLOPs counted by
``torch.utils.flop_counter``) against a matmul peak measured in the same run.

``--optimizer`` also times one AdamW step over the trainable parameters of the ``synthetic`` train
model (its transcript encoder included) with torch's three implementations: per-tensor loop,
``foreach`` and ``fused`` (the trainer uses fused when it can).

All numbers come from this one run on this machine; nothing is hard-coded. The SyncCFG anchors
here are stand-in latents (the VAE encodes are cached per shape in real use and are not part of
the per-step DiT cost measured here).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import get_preset
from .model.conditions import HarmonyConditions
from .model.dit import HarmonyDiT, count_parameters
from .sampling.guidance import GuidanceConfig, GuidedDenoiser
from .sampling.layout import AVLayout, mode_mask

__all__ = ["main"]


class _StandInAnchors:
    """Fixed anchor latents of the right shapes (no VAE in the loop)."""

    def silent_audio(self, a_shape, *, device, dtype):
        return torch.full(a_shape, 0.1, device=device, dtype=dtype)

    def static_video(self, frame_latent, v_shape):
        return frame_latent.expand(v_shape).contiguous()


@dataclass(frozen=True)
class _Case:
    preset: str
    frames: int  # video latent frames
    size: int  # latent height = width


CASES = (_Case("tiny", 13, 8), _Case("mid", 13, 16))
MODES = {
    "joint": GuidanceConfig.none(),
    "text-cfg": GuidanceConfig.text_cfg(),
    "sync-batched": GuidanceConfig.sync(batch="always"),
    "sync-sequential": GuidanceConfig.sync(batch="never"),
}


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Achieved fp32 GFLOP/s of a square matmul, the machine's practical peak for this run."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _build(case: _Case):
    cfg = get_preset(case.preset)
    g = torch.Generator().manual_seed(0)
    model = HarmonyDiT(cfg, generator=g).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    t_a = cfg.timeline.audio_latents_for_video(case.frames)
    v = torch.randn(1, cfg.video.in_channels, case.frames, case.size, case.size, generator=g)
    a = torch.randn(1, cfg.audio.in_channels, t_a, generator=g)

    def cond(seed: int) -> HarmonyConditions:
        gg = torch.Generator().manual_seed(seed)
        return HarmonyConditions(
            v_context=torch.randn(1, 16, cfg.video.text_dim, generator=gg),
            a_context=torch.randn(1, 16, cfg.audio.text_dim, generator=gg),
            speech=torch.randn(1, 12, cfg.speech_dim, generator=gg) if cfg.speech_dim else None,
        )

    return cfg, model, v, a, cond(1), cond(2)


def _time_step(den: GuidedDenoiser, x: torch.Tensor, repeats: int) -> tuple[float, int]:
    sigma = torch.tensor([0.5])
    den(x, torch.tensor([0.9]))  # warm-up; also gives the static-video anchor a first frame
    with FlopCounterMode(display=False) as fc:
        den(x, sigma)
    flops = fc.get_total_flops()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        den(x, sigma)
        best = min(best, time.perf_counter() - t0)
    return best, flops


def run(cases=CASES, repeats: int = 3) -> list[dict]:
    """Time every (preset, guidance mode) pair; returns rows of measurements."""
    rows = []
    for case in cases:
        cfg, model, v, a, pos, neg = _build(case)
        layout = AVLayout.of(v, a)
        x = layout.pack(v, a)
        tokens = case.frames * (case.size // 2) ** 2 + a.shape[2]
        for name, guidance in MODES.items():
            den = GuidedDenoiser(
                model,
                layout,
                mode_mask("t2av", layout),
                pos,
                guidance=guidance,
                anchors=_StandInAnchors(),
                neg_cond=neg,
            )
            seconds, flops = _time_step(den, x, repeats)
            rows.append(
                {
                    "preset": case.preset,
                    "params_m": count_parameters(cfg) / 1e6,
                    "tokens": tokens,
                    "mode": name,
                    "passes": len(den.passes_run[-1]),
                    "ms": seconds * 1e3,
                    "gflops": flops / 1e9,
                    "gflop_s": flops / seconds / 1e9,
                }
            )
    return rows


def optimizer_rows(preset: str = "synthetic", repeats: int = 20) -> list[dict]:
    """Best-of-``repeats`` milliseconds of one AdamW step over ``preset``'s train model per implementation."""
    from .training.model import build_train_model
    from .training.stages import get_stage

    stage = get_stage(preset)
    cfg = get_preset(stage.model)
    transcript = dataclasses.replace(stage.transcript, dim=cfg.speech_dim) if cfg.speech_dim else None
    model = build_train_model(cfg, transcript=transcript)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    rows = []
    for name, kwargs in (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, **kwargs)
        opt.step()  # creates the state
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            opt.step()
            best = min(best, time.perf_counter() - t0)
        rows.append({"preset": preset, "impl": name, "ms": best * 1e3,
                     "params_m": sum(p.numel() for p in params) / 1e6})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harmony_core.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per mode (best is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--optimizer", action="store_true", help="also time one AdamW step per implementation")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, matmul peak {peak:.1f} GFLOP/s (fp32)")
    rows = run(repeats=args.repeats)
    print(
        f"\n{'preset':<6} {'params':>8} {'tokens':>6}  {'mode':<16}{'passes':>6} {'ms/step':>9} "
        f"{'x joint':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'% peak':>7}"
    )
    for r in rows:
        joint = next(j for j in rows if j["preset"] == r["preset"] and j["mode"] == "joint")
        print(
            f"{r['preset']:<6} {r['params_m']:>7.1f}M {r['tokens']:>6}  {r['mode']:<16}{r['passes']:>6} "
            f"{r['ms']:>9.1f} {r['ms'] / joint['ms']:>8.2f} {r['gflops']:>8.2f} {r['gflop_s']:>8.1f} "
            f"{100 * r['gflop_s'] / peak:>6.0f}%"
        )
    for preset in dict.fromkeys(r["preset"] for r in rows):
        by = {r["mode"]: r["ms"] for r in rows if r["preset"] == preset}
        print(
            f"{preset}: SyncCFG batched / sequential = {by['sync-batched'] / by['sync-sequential']:.2f}, "
            f"SyncCFG batched / text CFG = {by['sync-batched'] / by['text-cfg']:.2f}"
        )
    if args.optimizer:
        opt_rows = optimizer_rows()
        loop = opt_rows[0]["ms"]
        print(f"\nAdamW step, {opt_rows[0]['preset']} train model ({opt_rows[0]['params_m']:.1f}M parameters):")
        for r in opt_rows:
            print(f"  {r['impl']:<8} {r['ms']:>7.2f} ms  x loop {r['ms'] / loop:.2f}")


if __name__ == "__main__":
    main()
