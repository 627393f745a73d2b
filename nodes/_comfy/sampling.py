"""The one-node sampler: the same steps as RandomNoise + KSamplerSelect + BasicScheduler +
SamplerCustomAdvanced, with a ``HarmonyGuider``."""

from __future__ import annotations

from typing import Any

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

__all__ = ["SAMPLER_NAMES", "SCHEDULER_NAMES", "run_guider"]

SAMPLER_NAMES: list[str] = list(comfy.samplers.SAMPLER_NAMES)
SCHEDULER_NAMES: list[str] = list(comfy.samplers.SCHEDULER_NAMES)


def run_guider(guider: Any, latent: dict[str, Any], *, seed: int, steps: int, sampler_name: str,
               scheduler: str, denoise: float = 1.0) -> dict[str, Any]:
    """Sample ``latent`` with ``guider``; returns the output LATENT (input dict with new samples).

    The noise comes from ``comfy.sample.prepare_noise`` (one draw per stream, as RandomNoise),
    sigmas from ComfyUI's scheduler for the model's own ``model_sampling``; progress ticks
    ComfyUI's progress bar, which also makes the run interruptible.
    """
    model = guider.model_patcher
    samples = latent["samples"]
    ms = model.get_model_object("model_sampling")
    total = steps if denoise >= 1.0 else max(steps, int(steps / max(denoise, 1e-4)))
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, total).cpu()[-(steps + 1):]
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    out_samples = guider.sample(noise, samples, comfy.samplers.sampler_object(sampler_name), sigmas,
                                denoise_mask=latent.get("noise_mask"), callback=callback,
                                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    out = latent.copy()
    out["samples"] = out_samples.to(comfy.model_management.intermediate_device())
    return out
