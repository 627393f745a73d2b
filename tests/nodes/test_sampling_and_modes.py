"""Generation modes, the SyncCFG guider and the sampler on the tiny random bundle: masks, per-stream
timesteps, anchor passes, batching, hooks and the kept streams."""

from __future__ import annotations

import contextlib

import pytest
import torch


def _encode_audio(nodes, loaded, av_latent, seconds=1.0, freq=330.0):
    t = torch.arange(int(22050 * seconds)) / 22050
    wave = (0.4 * torch.sin(2 * torch.pi * freq * t))[None, None]
    return nodes.HarmonyVAEEncodeAudio.execute({"waveform": wave, "sample_rate": 22050}, loaded[3],
                                               match_latent=av_latent).args[0]


@contextlib.contextmanager
def _spy(model):
    """Record the inputs of every HarmonyDiT call: ``(v_x, a_x, v_t, a_t)``."""
    calls = []
    dit = model.model.diffusion_model.dit
    handle = dit.register_forward_pre_hook(lambda mod, args: calls.append([a.detach().clone() for a in args[:4]]))
    try:
        yield calls
    finally:
        handle.remove()


def _sample(guider, latent, steps=3, sampler="euler", seed=0):
    import comfy.sample
    import comfy.samplers

    ms = guider.model_patcher.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", steps)
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    out = guider.sample(noise, latent["samples"], comfy.samplers.sampler_object(sampler), sigmas,
                        denoise_mask=latent.get("noise_mask"), seed=seed)
    return out.unbind(), sigmas


def test_audio_to_video_writes_the_clean_audio_and_marks_only_video_for_generation(nodes, loaded, av_latent):
    audio = _encode_audio(nodes, loaded, av_latent)
    out = nodes.HarmonyAudioToVideo.execute(av_latent, audio).args[0]
    v, a = out["samples"].unbind()
    v_mask, a_mask = out["noise_mask"].unbind()
    assert torch.equal(a, audio["samples"]) and bool((v_mask == 1).all()) and bool((a_mask == 0).all())
    assert out["fps"] == 24.0


def test_mode_nodes_replace_a_stale_mask_so_a_clip_can_be_revoiced(nodes, loaded, av_latent):
    a2v = nodes.HarmonyAudioToVideo.execute(av_latent, _encode_audio(nodes, loaded, av_latent)).args[0]
    a2v["samples"] = type(a2v["samples"])([t + 1.0 for t in a2v["samples"].unbind()])  # "a sampled clip"
    v2a = nodes.HarmonyVideoToAudio.execute(a2v).args[0]  # keep its own video, redraw the sound
    v_mask, a_mask = v2a["noise_mask"].unbind()
    assert bool((v_mask == 0).all()) and bool((a_mask == 1).all())
    assert torch.equal(v2a["samples"].unbind()[0], a2v["samples"].unbind()[0])


def test_mode_nodes_reject_a_clean_latent_of_another_clip_with_the_fix(nodes, loaded, av_latent):
    longer = nodes.HarmonyEmptyAVLatent.execute(loaded[2], loaded[3], 32, 32, 0.0, 13, 24.0, 1).args[0]
    audio = _encode_audio(nodes, loaded, longer)
    with pytest.raises(ValueError, match="Harmony Audio To Video: the audio latent has shape .*match_latent"):
        nodes.HarmonyAudioToVideo.execute(av_latent, audio)


def test_the_sampler_is_deterministic_per_seed_and_keeps_the_latent_layout(nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded

    def run(seed):
        return nodes.HarmonySampler.execute(model, positive, av_latent, vv, av, seed, 2, "euler", "simple",
                                            3.0, 2.0, 1.0).args[0]

    first, again, other = run(1), run(1), run(2)
    for x, y in zip(first["samples"].unbind(), again["samples"].unbind()):
        assert torch.equal(x, y)
    assert not torch.equal(first["samples"].unbind()[1], other["samples"].unbind()[1])
    for out, ref in zip(first["samples"].unbind(), av_latent["samples"].unbind()):
        assert out.shape == ref.shape and bool(torch.isfinite(out).all())
    assert first["fps"] == 24.0


def test_a2v_gives_the_audio_timestep_zero_and_returns_it_bit_for_bit_even_with_uni_pc(
        nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded
    a2v = nodes.HarmonyAudioToVideo.execute(av_latent, _encode_audio(nodes, loaded, av_latent)).args[0]
    clean = a2v["samples"].unbind()[1]
    with _spy(model) as calls:
        out = nodes.HarmonySampler.execute(model, positive, a2v, vv, av, 0, 3, "uni_pc", "simple",
                                           3.0, 2.0, 1.0).args[0]
    v, a = out["samples"].unbind()
    assert torch.equal(a, clean)  # uni_pc stops at sigma 0.001; the guider re-imposes the kept stream
    assert bool(v.abs().gt(0).any())
    for _v_x, _a_x, v_t, a_t in calls:
        assert bool((v_t[0] > 0).all())  # the joint row generates video ...
        assert not a_t.any()  # ... and every row sees the audio at t = 0


def test_sync_guidance_runs_its_passes_as_one_batched_forward_with_the_right_anchors(nodes, loaded, positive,
                                                                                       av_latent):
    model, _, vv, av = loaded
    guider = nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0).args[0]
    batches = []
    spied = model.clone()
    spied.set_model_unet_function_wrapper(
        lambda fn, a: (batches.append((a["c"]["harmony_pass"].clone(), list(a["cond_or_uncond"]))),
                       fn(a["input"], a["timestep"], **a["c"]))[1])
    guider.model_patcher = spied
    guider.model_options = spied.model_options
    with _spy(model) as calls:
        _sample(guider, av_latent, steps=3)
    assert guider.passes_run == [["joint", "anchor_v"]] + [["joint", "anchor_v", "anchor_a"]] * 2
    assert [len(flags) for flags, _ in batches] == [2, 3, 3]  # one forward per step
    flags, order = batches[-1]  # rows follow cond_or_uncond (ComfyUI may reverse them)
    row = {["joint", "anchor_v", "anchor_a"][i]: r for r, i in enumerate(order)}
    assert {n: flags[r].tolist() for n, r in row.items()} == {"joint": [0, 0], "anchor_v": [0, 1], "anchor_a": [1, 0]}
    engine = loaded[3].engine
    silence = engine.bundle.audio_vae.encode(torch.zeros(1, av_latent["samples"].unbind()[1].shape[2] * 512))
    v_x, a_x, v_t, a_t = calls[-1]
    j, av_, aa = row["joint"], row["anchor_v"], row["anchor_a"]
    assert torch.allclose(a_x[av_], silence[0], atol=1e-5)  # anchor_v: clean silence ...
    assert not a_t[av_].any() and bool((v_t[av_] > 0).all())  # ... at audio t = 0
    assert not v_t[aa].any() and bool((a_t[aa] > 0).all())  # anchor_a: clean still video at video t = 0
    assert torch.equal(v_x[j], v_x[av_]) and not torch.equal(v_x[j], v_x[aa])


def test_with_both_scales_at_one_the_guider_equals_plain_sampling(nodes, loaded, positive, av_latent):
    import comfy.samplers

    model, _, vv, av = loaded
    sync = nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 1.0, 1.0).args[0]
    plain = comfy.samplers.CFGGuider(model)
    plain.set_conds(positive, positive)
    plain.set_cfg(1.0)
    for x, y in zip(_sample(sync, av_latent)[0], _sample(plain, av_latent)[0]):
        assert torch.allclose(x, y, atol=1e-6)
    guided = _sample(nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0).args[0], av_latent)[0]
    assert not torch.allclose(guided[0], _sample(plain, av_latent)[0][0])


def test_pre_and_post_cfg_hooks_of_other_nodes_still_run(nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded
    seen = {"pre": [], "post": 0}
    patched = model.clone()

    def pre(args):
        seen["pre"].append(len(args["conds_out"]))
        return args["conds_out"]

    def post(args):
        seen["post"] += 1
        return args["denoised"]

    patched.set_model_sampler_pre_cfg_function(pre)
    patched.set_model_sampler_post_cfg_function(post)
    guider = nodes.HarmonySyncCFGGuider.execute(patched, positive, vv, av, 3.0, 2.0).args[0]
    _sample(guider, av_latent, steps=2)
    assert seen == {"pre": [2, 3], "post": 2}


def test_text_cfg_batches_prompts_of_different_lengths_in_one_forward(nodes, loaded, positive, av_latent):
    model, text, _, _ = loaded
    negative = nodes.HarmonyTextEncode.execute("", "", "", text_encoders=text).args[0]
    assert negative[0][0].shape[1] != positive[0][0].shape[1]
    guider = nodes.HarmonyCFGGuider.execute(model, positive, negative, 5.0, 4.0).args[0]
    with _spy(model) as calls:
        (v, a), _ = _sample(guider, av_latent, steps=2)
    assert [c[0].shape[0] for c in calls] == [2, 2] and guider.passes_run == [["joint", "negative"]] * 2
    assert bool(torch.isfinite(v).all()) and bool(torch.isfinite(a).all())


def test_the_guidance_interval_limits_the_extra_passes(nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded
    guider = nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0, None, 1.0, 1.0, "positive",
                                                0.5, 1.0).args[0]
    _sample(guider, av_latent, steps=4)
    assert [len(p) for p in guider.passes_run][:2] == [1, 1] and len(guider.passes_run[-1]) > 1


def test_the_guider_never_touches_the_sigmas_it_is_given(nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded
    guider = nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0).args[0]
    _, sigmas = _sample(guider, av_latent, steps=2, sampler="uni_pc")
    assert float(sigmas[-1]) == 0.0  # a cached SIGMAS output stays valid for the next prompt


def test_guider_errors_name_the_node_and_the_fix(nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded
    with pytest.raises(ValueError, match="Harmony SyncCFG Guider: a text scale is not 1 .* no negative"):
        nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0, None, 4.0)
    with pytest.raises(ValueError, match="Harmony SyncCFG Guider: start_percent=0.8 and end_percent=0.2"):
        nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0, None, 1.0, 1.0, "positive", 0.8, 0.2)
    guider = nodes.HarmonySyncCFGGuider.execute(model, positive, vv, av, 3.0, 2.0).args[0]
    video_only = {"samples": av_latent["samples"].unbind()[0]}
    with pytest.raises(ValueError, match="Harmony SyncCFG Guider: the latent has shape .*Harmony Empty AV Latent"):
        _sample(guider, video_only)


def test_v2a_chain_keeps_a_generated_video_and_redraws_its_sound(nodes, loaded, positive, av_latent):
    model, _, vv, av = loaded
    first = nodes.HarmonySampler.execute(model, positive, av_latent, vv, av, 3, 2, "euler", "simple",
                                         3.0, 2.0, 1.0).args[0]
    revoiced = nodes.HarmonySampler.execute(model, positive, nodes.HarmonyVideoToAudio.execute(first).args[0],
                                            vv, av, 4, 2, "euler", "simple", 3.0, 2.0, 1.0).args[0]
    (v0, a0), (v1, a1) = first["samples"].unbind(), revoiced["samples"].unbind()
    assert torch.equal(v0, v1) and not torch.equal(a0, a1)


@pytest.mark.parametrize("a2v", [False, True])
def test_the_comfyui_model_computes_what_the_plain_dit_computes(nodes, loaded, positive, a2v):
    """Packed input, conds through extra_conds, per-stream timesteps through process_timestep, x0 by
    CONST: the native MODEL must equal ``x - sigma * HarmonyDiT(...)`` on the same weights."""
    import comfy.utils

    model = loaded[0].model
    g = torch.Generator().manual_seed(0)
    v, a = torch.randn(1, 4, 3, 8, 8, generator=g), torch.randn(1, 6, 12, generator=g)
    x, shapes = comfy.utils.pack_latents([v, a])
    mask = comfy.utils.pack_latents([torch.ones_like(v), torch.zeros_like(a) if a2v else torch.ones_like(a)])[0]
    tensor, extra = positive[0]
    conds = model.extra_conds(cross_attn=tensor, harmony_text=extra["harmony_text"], latent_shapes=shapes,
                              denoise_mask=mask, device=torch.device("cpu"))
    kwargs = {k: c.process_cond(batch_size=1, area=None).concat([]) for k, c in conds.items()}
    sigma = torch.tensor([0.6])
    x0 = model.apply_model(x, sigma, **kwargs)
    # a plain harmony_core DiT (PyTorch layers, SDPA attention) with the same weights
    from harmony_core.model.dit import HarmonyDiT

    comfy_dit = model.diffusion_model.dit
    plain = HarmonyDiT(comfy_dit.config, init_weights=False)
    plain.load_state_dict(comfy_dit.state_dict())
    with torch.no_grad():
        v_vel, a_vel = plain.eval()(v, a, sigma, torch.zeros(1) if a2v else sigma, kwargs["harmony_text"])
    expected = x - 0.6 * comfy.utils.pack_latents([v_vel, a_vel])[0]
    assert torch.allclose(x0, expected, atol=1e-4)
