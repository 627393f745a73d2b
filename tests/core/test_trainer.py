"""The training system: exact resume, EMA maths, the non-finite guard, strict checkpoints, loss logs,
bucketed batches, reference plans, stage presets, overrides and the CLI end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from harmony_core.config import get_preset
from harmony_core.io.checkpoints import atomic_save_file, load_tensors
from harmony_core.model.conditions import ForwardOptions
from harmony_core.text.transcript import TranscriptEncoderConfig
from harmony_core.training.batching import BucketBatchSampler, collate, plan_cond_drop, plan_references
from harmony_core.training.checkpoint import checkpoint_step, load_ema_model
from harmony_core.training.config import TrainConfig, lr_at
from harmony_core.training.ema import EMA
from harmony_core.training.latents import LatentCache, LatentItem
from harmony_core.training.model import build_train_model
from harmony_core.training.overrides import apply_overrides
from harmony_core.training.stages import apply_trainable, get_stage
from harmony_core.training.trainer import LossStats, train

TCFG = TranscriptEncoderConfig(dim=12, num_blocks=1)


def random_cache(config, n=8, frames=(2, 3), seed=0, pools=False, null=False) -> LatentCache:
    """Random latents for the tiny preset: two length buckets, some empty transcripts (``null``: with
    an empty-prompt caption for condition dropout)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        tv = frames[i % len(frames)]
        ta = config.timeline.audio_latents_for_video(tv)
        items.append(LatentItem(
            v_x0=torch.randn(config.video.in_channels, tv, 4, 4, generator=g),
            a_x0=torch.randn(config.audio.in_channels, ta, generator=g),
            caption=torch.randn(3 + i % 3, config.video.text_dim, generator=g),
            transcript=("hello there", "", "ok go")[i % 3],
            ref_pool=torch.randn(config.audio.in_channels, 30, generator=g) if pools else None,
        ))
    return LatentCache(items, null_caption=torch.randn(2, config.video.text_dim, generator=g) if null else None)


def small_config(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=2, lr=1e-3, ema_decay=0.9, ckpt_every=3, log_every=2, ref_prob=0.5,
                ref_seconds=(0.1, 0.3))
    return TrainConfig(**{**base, **kw})


def run(out, cache, *, resume=False, model_seed=1, **kw):
    model = build_train_model(get_preset("tiny"), transcript=TCFG, seed=model_seed)
    history = []
    result = train(small_config(**kw), model, cache, out, resume=resume, progress=False,
                   callback=history.append)
    return result, history, model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared CPU, OpenMP spin-waiting makes these tiny steps ~10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cache():
    return random_cache(get_preset("tiny"))


@pytest.fixture(scope="module")
def straight(cache, tmp_path_factory):
    """Six uninterrupted steps (keeping one numbered checkpoint besides last.safetensors)."""
    return run(tmp_path_factory.mktemp("straight"), cache, keep_last=1)


# --- resume -----------------------------------------------------------------------------------


def test_resuming_after_three_steps_reproduces_the_uninterrupted_loss_curve_and_weights(
    cache, straight, tmp_path
):
    _, full_hist, full_model = straight
    first, first_hist, _ = run(tmp_path, cache, steps=3)
    assert first.step == 3 and checkpoint_step(tmp_path / "last.safetensors") == 3
    second, second_hist, resumed_model = run(tmp_path, cache, resume=True, model_seed=99)  # seed must not matter
    assert [h["step"] for h in second_hist] == [4, 5, 6]
    losses = [h["loss"] for h in first_hist + second_hist]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor([h["loss"] for h in full_hist]), rtol=0, atol=1e-6)
    for (name, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    ema_full = load_tensors(straight[0].checkpoint, prefix="ema.")
    ema_resumed = load_tensors(second.checkpoint, prefix="ema.")
    assert all(torch.allclose(ema_full[k], ema_resumed[k], rtol=0, atol=1e-6) for k in ema_full)


def test_numbered_checkpoints_beyond_keep_last_are_pruned(straight):
    out = Path(straight[0].checkpoint).parent
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["last.safetensors", "step_000006.safetensors"]
    assert checkpoint_step(out / "step_000006.safetensors") == 6


def test_init_copies_weights_from_a_checkpoint_and_refuses_another_architecture(straight):
    from harmony_core.training.cli import _load_init

    model = build_train_model(get_preset("tiny"), transcript=TCFG, seed=7)
    _load_init(model, Path(straight[0].checkpoint))
    stored = load_tensors(straight[0].checkpoint, prefix="model.")
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    cfg = get_preset("tiny")
    other = build_train_model(dataclasses.replace(cfg, speech_dim=8), transcript=dataclasses.replace(TCFG, dim=8))
    with pytest.raises(ValueError, match=r"HarmonyConfig\.speech_dim is 12 there but 8 in this run"):
        _load_init(other, Path(straight[0].checkpoint))


def test_starting_over_an_existing_run_without_resume_is_refused(cache, straight):
    with pytest.raises(FileExistsError, match="resume"):
        run(Path(straight[0].checkpoint).parent, cache)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lr": 2e-3}, "TrainConfig.lr"),
        ({"seed": 5}, "TrainConfig.seed"),
        ({"probs": (1.0, 1.0, 1.0)}, "TrainConfig.probs"),
        ({"lr_schedule": "cosine"}, "TrainConfig.lr_schedule"),
    ],
)
def test_resume_refuses_a_run_that_differs_and_names_the_field(cache, straight, change, field):
    out = Path(straight[0].checkpoint).parent
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        run(out, cache, resume=True, steps=7, **change)


def test_resume_refuses_another_architecture_naming_the_field(cache, straight):
    out = Path(straight[0].checkpoint).parent
    cfg = get_preset("tiny")
    wider = dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, num_heads=2),
                                audio=dataclasses.replace(cfg.audio, num_heads=2))
    model = build_train_model(wider, transcript=TCFG, seed=1)
    with pytest.raises(ValueError, match=r"HarmonyConfig\.audio\.num_heads is 2 now but 4"):
        train(small_config(steps=7), model, cache, out, resume=True, progress=False)


def _tamper(src, dst, drop):
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != drop}
    assert len(tensors) == len(list(safe_open(str(src), framework="pt").keys())) - 1
    atomic_save_file(tensors, dst, meta)


@pytest.mark.parametrize(
    "drop",
    ["model.dit.video_model.head.head.weight", "optim.dit.audio_model.head.head.weight.exp_avg",
     "ema.transcript.embed.weight"],
)
def test_a_checkpoint_missing_a_key_is_refused_with_the_key_named(cache, straight, tmp_path, drop):
    _tamper(straight[0].checkpoint, tmp_path / "last.safetensors", drop)
    short = drop.split(".", 1)[1] if not drop.startswith("optim") else drop
    with pytest.raises(ValueError, match=short.replace(".", r"\.")):
        run(tmp_path, cache, resume=True, steps=7)


# --- EMA, LR, guard -----------------------------------------------------------------------------


def test_ema_copies_before_its_start_and_then_averages_like_the_hand_formula():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, start_step=1)
    g = torch.Generator().manual_seed(0)
    weights = []
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.copy_(torch.randn(2, 3, generator=g))
        weights.append(model.weight.detach().clone())
        ema.update(model, step)
    w1, w2, w3 = weights
    expected = 0.9 * (0.9 * w1 + 0.1 * w2) + 0.1 * w3  # step 1 copies (step <= start), then averages
    torch.testing.assert_close(ema.state_dict()["weight"], expected, rtol=0, atol=1e-6)


def test_learning_rate_warms_up_linearly_then_stays_constant():
    cfg = TrainConfig(lr=1e-3, warmup=4)
    assert [lr_at(cfg, s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_a_nan_from_the_model_raises_naming_the_step_and_leaves_the_last_checkpoint_loadable(cache, tmp_path):
    model = build_train_model(get_preset("tiny"), transcript=TCFG, seed=1)
    calls = {"n": 0}

    def poison(module, args, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 3 else output

    model.dit.video_model.head.register_forward_hook(poison)
    with pytest.raises(FloatingPointError, match=r"step 3 \(task mix on this rank: joint=\d, a2v=\d, v2a=\d"):
        train(small_config(ckpt_every=2), model, cache, tmp_path, progress=False)
    assert checkpoint_step(tmp_path / "last.safetensors") == 2
    restored = load_ema_model(tmp_path / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in restored.parameters())


# --- logging ------------------------------------------------------------------------------------


def test_sigma_bin_and_task_losses_add_up_to_the_overall_mean():
    g = torch.Generator().manual_seed(3)
    stats = LossStats(5)
    x, tasks, sig = torch.rand(40, generator=g), torch.randint(0, 3, (40,), generator=g), torch.rand(40, generator=g)
    stats.add(stats.batch_vector(x, tasks, sig, x, x, tasks != 2, tasks != 1))
    s = stats.summary()
    assert s["loss"] == pytest.approx(float(x.mean()))
    for group in ("sigma", "joint|a2v|v2a"):
        keys = [k for k in s if k.startswith("loss/") and any(g_ in k for g_ in group.split("|"))]
        total = sum(s[k] * s["n/" + k[5:]] for k in keys)
        assert sum(s["n/" + k[5:]] for k in keys) == 40 and total / 40 == pytest.approx(s["loss"])
    in_bin = (sig >= 0.4) & (sig < 0.6)
    assert s["loss/sigma0.4-0.6"] == pytest.approx(float(x[in_bin].mean()))


def test_every_logged_step_splits_its_loss_exactly_into_sigma_bins(straight):
    for h in straight[1]:
        bins = [k for k in h if k.startswith("loss/sigma")]
        assert sum(h[k] * h["n/" + k[5:]] for k in bins) / h["n"] == pytest.approx(h["loss"])


# --- batches ------------------------------------------------------------------------------------


def test_bucket_sampler_never_mixes_lengths_and_is_deterministic_per_seed():
    keys = [(2, 17)] * 7 + [(3, 25)] * 5 + [(4, 30)]
    a, b, c = (BucketBatchSampler(keys, 2, seed=s) for s in (1, 1, 2))
    assert a.batches_per_epoch == 3 + 2  # remainders and the 1-clip bucket sit out
    seq = [a.batch(s) for s in range(15)]
    assert seq == [b.batch(s) for s in range(15)] and seq != [c.batch(s) for s in range(15)]
    assert all(len({keys[i] for i in batch}) == 1 for batch in seq)
    for e in range(3):  # an epoch never repeats a clip
        used = [i for batch in seq[5 * e : 5 * e + 5] for i in batch]
        assert len(used) == len(set(used)) == 10


def test_bucket_sampler_explains_when_no_bucket_fills_a_batch():
    with pytest.raises(ValueError, match="no length bucket holds batch_size=4"):
        BucketBatchSampler([(2, 17)] * 3 + [(3, 25)] * 3, 4, seed=0)


def test_reference_segments_are_cut_from_the_clip_or_its_timbre_partner_for_the_whole_batch():
    cache = random_cache(get_preset("tiny"), n=4, frames=(3,), pools=True)
    rate = 31.25
    for mode, field in (("same", "a_x0"), ("timbre", "ref_pool")):
        plans = [plan_references(cache, [0, 1, 2, 3], seed=0, step=s, prob=0.5, seconds=(0.1, 0.5), rate=rate,
                                 mode=mode) for s in range(20)]
        assert 4 < sum(p.length > 0 for p in plans) < 16  # some batches with references, some without
        plan = next(p for p in plans if p.length)
        assert 3 <= plan.length <= min(16, cache[0].a_x0.shape[1])  # round(0.1*31.25)..round(0.5*31.25)
        batch = collate(cache, [0, 1, 2, 3], plan=plan, rows=slice(2, 4))
        for row, j in enumerate((2, 3)):
            src = getattr(cache[j], field)
            o = plan.offsets[j]
            assert torch.equal(batch.a_ref[row], src[:, o : o + plan.length])


def test_condition_dropout_replaces_caption_and_transcript_by_the_empty_prompt_per_row():
    cache = random_cache(get_preset("tiny"), n=4, frames=(3,), null=True)
    drops = [plan_cond_drop(0, s, 4, 0.25) for s in range(200)]
    rate = sum(map(sum, drops)) / 800
    assert 0.2 < rate < 0.3
    assert drops == [plan_cond_drop(0, s, 4, 0.25) for s in range(200)]  # a pure function of (seed, step, row)
    assert plan_cond_drop(0, 0, 4, 0.0) == [False] * 4
    drop = [False, True, False, True]
    full = collate(cache, [0, 1, 2, 3], drop=drop)
    for r in range(4):
        want = cache.null_caption if drop[r] else cache[r].caption
        n = want.shape[0]
        assert torch.equal(full.caption[r, :n], want) and bool(full.caption_mask[r, :n].all())
        assert not bool(full.caption_mask[r, n:].any())
        assert bool(full.transcript_mask[r].any()) == (not drop[r] and cache[r].transcript != "")
    half = collate(cache, [0, 1, 2, 3], drop=drop, rows=slice(2, 4))  # a rank's rows equal the global rows
    assert torch.equal(half.caption, full.caption[2:]) and torch.equal(half.transcript_ids, full.transcript_ids[2:])


def test_condition_dropout_on_a_cache_without_the_empty_prompt_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="cond_drop=0.1 needs the empty prompt.*Rebuild the cache"):
        run(tmp_path, random_cache(get_preset("tiny")), cond_drop=0.1)
    assert not (tmp_path / "last.safetensors").exists()
    with pytest.raises(ValueError, match="cond_drop=1.0.*probability in \\[0, 1\\)"):
        TrainConfig(cond_drop=1.0)


def test_a_run_with_condition_dropout_trains_and_resumes_exactly(tmp_path):
    cache = random_cache(get_preset("tiny"), null=True)
    _, straight, _ = run(tmp_path / "a", cache, cond_drop=0.5)
    run(tmp_path / "b", cache, cond_drop=0.5, steps=3)
    _, resumed, _ = run(tmp_path / "b", cache, cond_drop=0.5, resume=True)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight[3:]]


def test_a_latent_cache_keeps_its_empty_prompt_caption_through_a_file(tmp_path):
    cache = random_cache(get_preset("tiny"), n=2, null=True)
    cache.save(tmp_path / "c.safetensors")
    assert torch.equal(LatentCache.load(tmp_path / "c.safetensors").null_caption, cache.null_caption)
    with pytest.raises(ValueError, match="null_caption has shape"):
        LatentCache(cache.items, null_caption=torch.zeros(2, 5))


def test_a_timbre_partner_shares_the_voice_but_not_the_words_or_the_seed():
    from harmony_core.data.synthetic import generate_clip
    from harmony_core.training.latents import synthetic_timbre_partner

    clip = generate_clip(3, family="face", seconds=1.0)
    partner = synthetic_timbre_partner(clip)
    assert partner.params["f0"] == clip.params["f0"] and partner.params["seed"] != clip.params["seed"]
    assert partner.num_frames == clip.num_frames and partner.family == "face"
    assert not torch.equal(partner.waveform, clip.waveform)


def test_folder_clips_are_cut_to_the_longest_listed_duration_they_cover():
    from harmony_core.data.synthetic import generate_clip
    from harmony_core.training.cli import _trim_to_bucket

    clip = generate_clip(0, family="drum", seconds=1.5)  # 37 frames
    cut = _trim_to_bucket(clip, (0.5, 1.0, 2.0))
    samples = round(25 / 24 * 16000)  # the audio covers exactly the 25 frames
    assert cut.num_frames == 25 and cut.waveform.shape[0] == samples
    assert torch.equal(cut.frames, clip.frames[:25]) and torch.equal(cut.waveform, clip.waveform[:samples])
    assert _trim_to_bucket(clip, (2.0, 3.0)) is None


# --- stages -------------------------------------------------------------------------------------


def test_audio_pretraining_trains_only_the_audio_branch_and_ignores_the_video(cache, tmp_path):
    stage = get_stage("audio_pretrain")
    model = build_train_model(get_preset("tiny"), transcript=TCFG, options=stage.options, seed=1)
    apply_trainable(model, stage)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = dataclasses.replace(stage.train, steps=2, batch_size=2, lr=1e-3, precision="bf16", ref_prob=1.0,
                              ref_seconds=(0.1, 0.3), ckpt_every=0, log_every=1)
    train(cfg, model, cache, tmp_path, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("dit.video_model."))
    assert not torch.equal(before["dit.audio_model.head.head.weight"], after["dit.audio_model.head.head.weight"])
    assert not torch.equal(before["transcript.embed.weight"], after["transcript.embed.weight"])
    # interactions off: the audio prediction does not depend on the video stream at all
    model.eval()
    item = cache[1]
    v, a, ctx = item.v_x0[None], item.a_x0[None], item.caption[None]
    t = torch.tensor([0.5])
    with torch.no_grad():
        _, a1 = model(v, a, t, t, ctx, ctx)
        _, a2 = model(torch.randn_like(v), a, t * 0, t, ctx, ctx)
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    assert stage.options == ForwardOptions(a2v=False, v2a=False, style=False, fusion=False)


# --- overrides and CLI --------------------------------------------------------------------------


def _sections():
    stage = get_stage("tiny")
    return {"": stage.train, "data": stage.data, "model": get_preset("tiny"), "transcript": stage.transcript}


def test_overrides_parse_each_field_by_its_type_and_apply_coupled_fields_together():
    out = apply_overrides(_sections(), ["lr=2e-4", "probs=0.6,0.2,0.2", "grad_checkpointing=yes", "steps=12",
                                        "data.seconds=1,2.5", "model.video.dim=64", "model.audio.dim=64",
                                        "model.interaction.local=false", "precision=bf16"])
    train_cfg = out[""]
    assert (train_cfg.lr, train_cfg.probs, train_cfg.grad_checkpointing, train_cfg.steps) == (2e-4, (0.6, 0.2, 0.2),
                                                                                              True, 12)
    assert out["data"].seconds == (1.0, 2.5) and out["model"].video.dim == out["model"].audio.dim == 64
    assert out["model"].interaction.local is False and train_cfg.precision == "bf16"


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("steps=1.5", r"override steps='1\.5': expected an int, e\.g\. steps=10"),
        ("lr=fast", r"override lr='fast': expected a float"),
        ("probs=1,2", r"expected 3 comma-separated values"),
        ("grad_checkpointing=maybe", r"expected a bool \(true/false\)"),
        ("lrr=1", r"unknown override key 'lrr'\. Did you mean 'lr'\? Valid keys: steps, batch_size, lr,"),
        ("model.video", r"not key=value"),
        ("model.video=3", r"names a section, not a field: set one of its fields, e\.g\. model\.video\.in_channels"),
        ("precision=fp16", r"TrainConfig\.precision='fp16' is invalid"),
        ("model.video.dim=64", r"HarmonyConfig\.audio\.dim=48 is invalid"),
    ],
)
def test_bad_overrides_fail_with_a_message_naming_key_value_and_expectation(pair, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(_sections(), [pair])


def test_cli_overrides_may_come_before_and_after_options():
    from harmony_core.training.cli import build_parser

    args = build_parser().parse_intermixed_args(["--preset", "tiny", "lr=1e-4", "--out", "x", "--resume", "steps=2"])
    assert args.overrides == ["lr=1e-4", "steps=2"] and args.resume and args.preset == "tiny"


def test_the_cli_trains_the_tiny_preset_and_writes_a_loadable_bundle(tmp_path):
    from harmony_core.__main__ import main
    from harmony_core.io.bundle import load_bundle
    from harmony_core.training.cli import main as cli_main
    from harmony_core.vae.audio import AudioVAE, AudioVAEConfig
    from harmony_core.vae.common import save_vae
    from harmony_core.vae.video import VideoVAE, VideoVAEConfig

    video_vae = VideoVAE(VideoVAEConfig(latent_channels=4, channels=(8, 8, 8)))
    save_vae(tmp_path / "v.safetensors", video_vae)
    save_vae(tmp_path / "a.safetensors", AudioVAE(AudioVAEConfig(latent_channels=6, hidden=16, num_res_blocks=1)))
    vaes = ["--video-vae", str(tmp_path / "v.safetensors"), "--audio-vae", str(tmp_path / "a.safetensors")]
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path / "run"), *vaes, "--clips", "4", "--no-progress",
            "--save-latents", str(tmp_path / "cache.safetensors"), "steps=2", "ckpt_every=0"]
    assert main(argv) == 0
    bundle = load_bundle(tmp_path / "run" / "bundle.safetensors")
    cfg = bundle.config
    assert (cfg.video.in_channels, cfg.audio.in_channels, cfg.video.text_dim) == (4, 6, 384)
    assert bundle.info["steps"] == 2 and bundle.info["stage"] == "tiny" and "steps=2" in bundle.info["command"]
    assert bundle.transcript is not None and bundle.transcript.dim == bundle.config.speech_dim
    ema = load_tensors(tmp_path / "run" / "last.safetensors", prefix="ema.dit.")
    assert all(torch.equal(v, ema[k]) for k, v in bundle.dit.state_dict().items())  # the bundle ships the EMA
    assert json.loads(json.dumps(bundle.info))["data"]["clips"] == 4  # info is plain JSON
    assert main(argv[:-2] + ["model.video.in_channels=8"]) == 2  # derived from the VAE: refused, exit status 2
    with torch.no_grad():
        next(video_vae.parameters()).add_(1.0)
    save_vae(tmp_path / "v2.safetensors", video_vae)
    reuse = ["--preset", "tiny", "--out", str(tmp_path / "run2"), "--latents", str(tmp_path / "cache.safetensors"),
             "--video-vae", str(tmp_path / "v2.safetensors"), "--audio-vae", str(tmp_path / "a.safetensors")]
    with pytest.raises(ValueError, match="encoded with another video vae"):
        cli_main(reuse)  # a cache never pairs with a VAE that did not encode it


def test_the_fused_adamw_the_trainer_picks_updates_like_the_per_tensor_loop():
    from harmony_core.bench import optimizer_rows
    from harmony_core.training.trainer import _can_fuse

    def run(**kwargs):
        model = build_train_model(get_preset("tiny"), seed=3)
        params = [p for p in model.parameters() if p.requires_grad]
        assert _can_fuse(params)
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01, **kwargs)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return torch.cat([p.detach().flatten() for p in params])

    before = torch.cat([p.detach().flatten() for p in build_train_model(get_preset("tiny"), seed=3).parameters()])
    loop, fused = run(foreach=False), run(fused=True)
    assert (loop - before).abs().max() > 1e-3  # the steps moved the weights
    torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)
    assert not _can_fuse([torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)])
    rows = optimizer_rows("tiny", repeats=1)
    assert [r["impl"] for r in rows] == ["loop", "foreach", "fused"] and all(r["ms"] > 0 for r in rows)
