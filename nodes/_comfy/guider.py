"""SyncCFG as a ComfyUI ``GUIDER`` (a ``comfy.samplers.CFGGuider`` subclass), for core
``SamplerCustomAdvanced`` and for our ``HarmonySampler``.

Each step (``predict_noise``):

1. ``plan_passes`` picks the passes: ``joint`` (positive prompt), ``anchor_v`` (audio stream
   replaced by clean *silent* audio at ``a_t = 0``, paper Eq. 9), ``anchor_a`` (video stream
   replaced by a clean *static* video at ``v_t = 0``, Eq. 10) and ``negative`` (text CFG). The
   static video holds the clean video's first frame when video frame 0 is kept (V2A), else the
   previous step's estimate of frame 0 (so in T2AV audio sync guidance starts at step 2); the
   anchors are encoded by the VAEs given to the guider (silence once per length, stills cached).
2. Every pass is a copy of the positive (or negative) cond whose ``model_conds`` carry the same
   three extra entries: ``harmony_pass`` (which stream is replaced), ``harmony_v_sub`` and
   ``harmony_a_sub`` (the anchor latents). Equal keys and shapes let ``calc_cond_batch`` run all
   passes as **one batched forward** (it splits the batch itself when memory is short, asking the
   model's ``memory_required``). Before the first step, with the model loaded, ``inner_sample``
   checks the free memory against ``harmony_core.memory``'s estimate: passes that do not fit
   together run as one ``calc_cond_batch`` call each, and a run where not even one pass fits
   fails at once with the estimator's message (need, free memory, fixes).
3. ``sampler_pre_cfg_function`` hooks run on the pass outputs (as ``Guider_PerpNeg`` does),
   ``combine_packed`` combines them per stream on the packed latent (split at ``v_numel``), and
   ``sampler_post_cfg_function`` hooks run on the result. Hooks see the joint pass as ``cond``,
   the first guidance pass as ``uncond`` and the video scale as ``cond_scale``.

Kept streams (A2V / V2A) need nothing here: the model gives them t = 0 and ``KSamplerX0Inpaint``
re-imposes them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import comfy.conds
import comfy.samplers
import torch

from ...harmony_core.sampling.anchors import AnchorSource
from ...harmony_core.sampling.guidance import GuidanceConfig
from ...harmony_core.sampling.layout import AVLayout
from ...harmony_core.sampling.packed import PASS_CLEAN, combine_packed, keep_clean, plan_passes, static_frame
from .compat import require_av_support

__all__ = ["HarmonyGuider"]

log = logging.getLogger(__name__)


class HarmonyGuider(comfy.samplers.CFGGuider):
    """Per-stream guidance for Harmony (SyncCFG, optional text CFG, guidance interval).

    Args:
        model_patcher: the Harmony MODEL.
        guidance: scales and anchor text; its ``interval`` is replaced at sampling time from
            ``percent`` (ComfyUI's schedule, which model patches such as ModelSamplingSD3 change).
        anchors: silent-audio / static-video builder (None when both sync scales are 1).
        percent: ``(start, end)`` fraction of the schedule in which guidance runs.
        node: the display name used in error messages.
    """

    def __init__(self, model_patcher: Any, *, guidance: GuidanceConfig, anchors: AnchorSource | None,
                 percent: tuple[float, float] = (0.0, 1.0), node: str = "Harmony SyncCFG Guider") -> None:
        super().__init__(model_patcher)
        self.guidance = guidance
        self.anchors = anchors
        self.percent = percent
        self.node = node
        self._active = guidance
        self._last_v_x0: torch.Tensor | None = None
        self._shapes: tuple | None = None  # (video, audio) latent shapes of the run
        self.batched = True  # all passes of a step in one forward (decided per run from free memory)
        self.passes_run: list[list[str]] = []  # pass names of every step of the last run

    def set_conds(self, positive: list, negative: list | None = None) -> None:
        conds = {"positive": positive}
        if negative is not None:
            conds["negative"] = negative
        self.inner_set_conds(conds)

    # ------------------------------------------------------------------------------------------
    def sample(self, noise: Any, latent_image: Any, sampler: Any, sigmas: torch.Tensor, denoise_mask: Any = None,
               callback: Any = None, disable_pbar: bool = False, seed: int | None = None) -> Any:
        require_av_support(self.node)
        if not (getattr(latent_image, "is_nested", False) and len(latent_image.unbind()) == 2):
            shape = tuple(latent_image.shape) if hasattr(latent_image, "shape") else type(latent_image).__name__
            raise ValueError(f"{self.node}: the latent has shape {shape}; Harmony samples audio and video together. "
                             "Start from 'Harmony Empty AV Latent'.")
        ms = self.model_patcher.get_model_object("model_sampling")
        start, end = self.percent
        hi = min(1.0, float(ms.percent_to_sigma(start)))
        lo = max(0.0, min(hi, float(ms.percent_to_sigma(end))))
        self._active = dataclasses.replace(self.guidance, interval=(lo, hi))
        self._last_v_x0 = None
        self.passes_run = []
        # The latent shapes tell the model's memory_required (ComfyUI asks it while loading the
        # model and batching conds) what the packed latent holds.
        self._shapes = tuple(tuple(t.shape) for t in latent_image.unbind())
        if hasattr(self.model_patcher.model, "harmony_latent_shapes"):
            self.model_patcher.model.harmony_latent_shapes = self._shapes
        # Samplers such as uni_pc write into the sigmas they get; ComfyUI caches node outputs, so
        # a shared SIGMAS tensor must not be touched.
        out = super().sample(noise, latent_image, sampler, sigmas.clone(), denoise_mask=denoise_mask,
                             callback=callback, disable_pbar=disable_pbar, seed=seed)
        return self._reimpose(out, latent_image, denoise_mask)

    def inner_sample(self, noise: Any, latent_image: Any, device: Any, sampler: Any, sigmas: torch.Tensor,
                     denoise_mask: Any, callback: Any, disable_pbar: bool, seed: Any, latent_shapes: Any = None) -> Any:
        """Decide, with the model now loaded on ``device``, whether a step's passes fit as one batched
        forward; fail before the first step when not even one pass at a time fits."""
        self.batched = self._choose_batching(device)
        return super().inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback,
                                    disable_pbar, seed, latent_shapes=latent_shapes)

    def _choose_batching(self, device: Any) -> bool:
        import comfy.model_management as mm

        from .memory import guidance_batching

        free_fn = getattr(mm, "get_free_memory", None)
        model = self.model_patcher.model
        if free_fn is None or self._shapes is None or not hasattr(model, "harmony_config"):
            return True
        lo, hi = self._active.interval
        passes = len(plan_passes(self._active, sigma=(lo + hi) / 2, generates_video=True, generates_audio=True,
                                 static_frame_known=self.anchors is not None))
        v, a = self._shapes
        return guidance_batching(
            model.harmony_config, v_shape=v, a_shape=a, passes=passes, weight_dtype=model.get_dtype(),
            compute_dtype=model.get_dtype_inference(), free_bytes=int(free_fn(device)),
            what=f"{self.node} ({v[4]}x{v[3]} latent, {v[2]} video / {a[2]} audio latent frames, {passes} passes)")

    @staticmethod
    def _reimpose(out: Any, latent_image: Any, denoise_mask: Any) -> Any:
        """Kept streams come back exactly as given, whatever the sampler's last sigma."""
        if not getattr(denoise_mask, "is_nested", False) or not getattr(out, "is_nested", False):
            return out
        streams = []
        for o, clean, m in zip(out.unbind(), latent_image.unbind(), denoise_mask.unbind()):
            same = m.dim() == o.dim() and all(a in (1, b) for a, b in zip(m.shape, o.shape))
            streams.append(keep_clean(o, clean, m) if same else o)
        return type(out)(streams)

    # ------------------------------------------------------------------------------------------
    def _layout(self, model_conds: dict, batch: int) -> AVLayout:
        shapes = model_conds["latent_shapes"].cond
        return AVLayout((batch, *tuple(shapes[0])[1:]), (batch, *tuple(shapes[1])[1:]))

    @staticmethod
    def _gen(model_conds: dict, key: str) -> torch.Tensor | None:
        c = model_conds.get(key)
        return None if c is None else c.cond

    def _pass_conds(self, base: list[dict], name: str, v_sub: torch.Tensor, a_sub: torch.Tensor) -> list[dict]:
        b = v_sub.shape[0]
        flags = torch.tensor(PASS_CLEAN[name], device=v_sub.device).expand(b, 2).contiguous()
        out = []
        for c in base:
            c = c.copy()
            mc = dict(c["model_conds"])
            mc["harmony_pass"] = comfy.conds.CONDRegular(flags)
            mc["harmony_v_sub"] = comfy.conds.CONDRegular(v_sub)
            mc["harmony_a_sub"] = comfy.conds.CONDRegular(a_sub)
            c["model_conds"] = mc
            out.append(c)
        return out

    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict | None = None,
                      seed: int | None = None) -> torch.Tensor:
        model_options = model_options if model_options is not None else {}
        g = self._active
        positive = self.conds.get("positive")
        negative = self.conds.get("negative")
        mc = positive[0]["model_conds"]
        if "latent_shapes" not in mc or len(mc["latent_shapes"].cond) != 2:
            raise ValueError(f"{self.node}: this model is not a Harmony model (no audio+video latent shapes reached "
                             "it). Connect the MODEL of 'Harmony Model Loader'.")
        b = x.shape[0]
        layout = self._layout(mc, b)
        v_x, _ = layout.unpack(x.reshape(b, -1))
        v_gen, a_gen = self._gen(mc, "harmony_v_gen"), self._gen(mc, "harmony_a_gen")
        frame = static_frame(v_x, v_gen, self._last_v_x0)
        names = plan_passes(
            g, sigma=float(timestep.flatten()[0]),
            generates_video=v_gen is None or bool((v_gen > 0).any()),
            generates_audio=a_gen is None or bool((a_gen > 0).any()),
            static_frame_known=frame is not None and self.anchors is not None,
        )
        if "negative" in names and negative is None:
            raise ValueError(f"{self.node}: a text scale is not 1 but no negative conditioning is connected; connect "
                             "one (e.g. 'Harmony Text Encode' with empty prompts) or set the text scales to 1.")
        v_sub = torch.zeros(layout.v_shape, device=x.device, dtype=x.dtype)
        a_sub = torch.zeros(layout.a_shape, device=x.device, dtype=x.dtype)
        if "anchor_v" in names:
            a_sub = self.anchors.silent_audio(layout.a_shape, device=x.device, dtype=x.dtype)
        if "anchor_a" in names:
            v_sub = self.anchors.static_video(frame.to(x.dtype), layout.v_shape).to(x.device, x.dtype)
        anchor_base = negative if g.anchor_text == "negative" and negative is not None else positive
        base = {"joint": positive, "anchor_v": anchor_base, "anchor_a": anchor_base, "negative": negative}
        conds = [self._pass_conds(base[n], n, v_sub, a_sub) for n in names]
        if len(conds) == 1:
            conds.append(None)  # hooks expect [cond, uncond]; a None cond costs no forward pass
        if self.batched:
            out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        else:  # one forward per pass: what fits when the stacked passes do not (_choose_batching)
            out = [comfy.samplers.calc_cond_batch(self.inner_model, [c], x, timestep, model_options)[0]
                   for c in conds]
        for fn in model_options.get("sampler_pre_cfg_function", []):
            out = fn({"conds": conds, "conds_out": out, "cond_scale": g.video_sync_scale, "timestep": timestep,
                      "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options})
        outs = {n: out[i] for i, n in enumerate(names)}
        result = combine_packed(outs, layout, g)
        self._last_v_x0 = layout.unpack(outs["joint"].reshape(b, -1))[0].detach().clone()
        self.passes_run.append(names)
        for fn in model_options.get("sampler_post_cfg_function", []):
            result = fn({"denoised": result, "cond": conds[0], "uncond": conds[1], "cond_scale": g.video_sync_scale,
                         "model": self.inner_model, "uncond_denoised": out[1], "cond_denoised": out[0],
                         "sigma": timestep, "model_options": model_options, "input": x})
        return result
