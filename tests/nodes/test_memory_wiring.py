"""The memory estimate in the ComfyUI adapters: the model's ``memory_required`` (what ComfyUI asks
when it loads the model and stacks conds), the guider's batched / one-at-a-time decision from the
free memory, its early failure, and the loader's report line."""

from __future__ import annotations

import math

import pytest
import torch

from harmony_core import memory


def _free(n):
    """A stand-in for ``comfy.model_management.get_free_memory`` reporting ``n`` free bytes."""
    return lambda dev=None, torch_free_too=False: (int(n), int(n)) if torch_free_too else int(n)


def _sample(guider, latent, steps=2, seed=0):
    import comfy.sample
    import comfy.samplers

    ms = guider.model_patcher.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", steps)
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    return guider.sample(noise, latent["samples"], comfy.samplers.sampler_object("euler"), sigmas, seed=seed).unbind()


def _spied(model):
    """A clone of the MODEL recording the batch of every forward ComfyUI's calc_cond_batch makes."""
    batches = []
    patcher = model.clone()
    patcher.set_model_unet_function_wrapper(
        lambda fn, a: (batches.append(a["input"].shape[0]), fn(a["input"], a["timestep"], **a["c"]))[1])
    return patcher, batches


def _needs(model, av_latent, passes=3):
    """``(batched, one at a time)`` sampling need of this run, straight from the estimator."""
    v, a = av_latent["samples"].unbind()
    cfg = model.model.diffusion_model.dit.config
    kw = dict(width=v.shape[4], height=v.shape[3], num_frames=cfg.timeline.video_pixel_frames(v.shape[2]),
              space_stride=1, anchor_vaes=False, attention="sdpa", passes=passes, weight_dtype="fp32",
              compute_dtype="fp32")
    return tuple(memory.estimate_memory(cfg, batched=b, **kw).sampling_extra for b in (True, False))


def test_memory_required_is_one_forward_of_the_estimator_once_the_shapes_are_known(loaded, av_latent):
    model = loaded[0].model
    v, a = av_latent["samples"].unbind()
    n = math.prod(v.shape[1:]) + math.prod(a.shape[1:])
    model.harmony_latent_shapes = (tuple(v.shape), tuple(a.shape))
    try:
        cfg = model.diffusion_model.dit.config
        want = memory.activation_bytes(cfg, latent_frames=v.shape[2], latent_h=v.shape[3], latent_w=v.shape[4],
                                       audio_latents=a.shape[2], batch=3, compute_dtype="fp32", attention="sdpa",
                                       text_tokens=max(cfg.video.text_len, 1),
                                       speech_tokens=cfg.video.text_len if cfg.speech_dim else 0)
        assert model.memory_required([3, 1, n]) == want > 0
        assert model.memory_required([6, 1, n]) > want  # more stacked passes, more memory
        # a packed length that is not this run's latent: ComfyUI's own formula (0 in the fakes)
        assert model.memory_required([3, 1, n + 1]) != want
    finally:
        model.harmony_latent_shapes = None


def test_passes_run_batched_when_they_fit_and_one_at_a_time_when_only_one_fits(nodes, loaded, positive, av_latent,
                                                                               monkeypatch):
    import comfy.model_management as mm

    model, _, vv, av = loaded
    batched_need, single_need = _needs(model, av_latent)
    assert single_need < batched_need
    runs = {}
    for name, free in (("batched", batched_need * 4), ("sequential", (single_need + batched_need) / 2 / 0.9)):
        monkeypatch.setattr(mm, "get_free_memory", _free(free),
                            raising=False)
        patcher, batches = _spied(model)
        guider = nodes.HarmonySyncCFGGuider.execute(patcher, positive, vv, av, 3.0, 2.0).args[0]
        runs[name] = (_sample(guider, av_latent), batches, guider.batched)
    assert runs["batched"][1:] == ([2, 3], True)  # step 1 has no still frame yet: 2 passes, then 3
    assert runs["sequential"][1:] == ([1, 1, 1, 1, 1], False)
    for x, y in zip(runs["batched"][0], runs["sequential"][0]):  # the same maths, pass by pass
        assert torch.allclose(x, y, atol=1e-5)


def test_a_run_where_not_even_one_pass_fits_fails_before_the_first_step(nodes, loaded, positive, av_latent,
                                                                        monkeypatch):
    import comfy.model_management as mm

    model, _, vv, av = loaded
    _, single_need = _needs(model, av_latent)
    monkeypatch.setattr(mm, "get_free_memory", _free(single_need / 2),
                        raising=False)
    patcher, batches = _spied(model)
    guider = nodes.HarmonySyncCFGGuider.execute(patcher, positive, vv, av, 3.0, 2.0).args[0]
    with pytest.raises(MemoryError) as e:
        _sample(guider, av_latent)
    msg = str(e.value)
    assert msg.startswith("Harmony SyncCFG Guider (") and "3 passes" in msg and "needs about" in msg
    assert "Fixes" in msg and batches == []  # no forward ran


def test_the_loader_reports_the_estimate_at_ovis_native_clip_for_ovi_shaped_models(nodes):
    import importlib

    from harmony_core.config import get_preset

    mem = importlib.import_module(nodes.__name__ + "._comfy.memory")
    line = mem.native_clip_line(get_preset("ovi"), torch.bfloat16, torch.bfloat16, free_bytes=10**12)
    est = memory.estimate_memory(get_preset("ovi"), width=704, height=704, num_frames=121, passes=3,
                                 weight_dtype="bf16", compute_dtype="bf16", attention="flash", offload="model")
    assert f"DiT weights {est.weights / 1e9:.1f} GB" in line and f"peak {est.peak / 1e9:.1f} GB" in line
    assert "free on the sampling device" not in line
    assert "keep part of the weights in RAM" in mem.native_clip_line(get_preset("ovi"), torch.bfloat16,
                                                                      torch.bfloat16, free_bytes=10**9)
    assert mem.native_clip_line(get_preset("tiny"), torch.float32, None, None) == ""  # not Ovi's latents
