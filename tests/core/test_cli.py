"""The generate and eval commands on a small random bundle (no shipped model needed)."""

from __future__ import annotations

import json

import pytest
import torch

from harmony_core.cli import eval as eval_cli
from harmony_core.cli import generate
from harmony_core.io.bundle import save_bundle
from harmony_core.io.media import probe_streams, write_mp4
from tests._bundles import make_random_bundle


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    save_bundle(path, make_random_bundle())
    return str(path)


def test_generate_writes_an_mp4_with_video_and_audio(bundle_path, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert generate.main(["--model", bundle_path, "--prompt", "a red ball bouncing", "--seconds", "1", "--steps", "2",
                          "--quiet", "--out", str(out)]) == 0
    info = probe_streams(out)
    assert info["video"]["codec"] == "h264" and info["video"]["frames"] == 25 and info["audio"]["codec"] == "aac"
    assert "wrote" in capsys.readouterr().out


def test_generate_v2a_keeps_the_input_video_length(bundle_path, tmp_path):
    from harmony_core.data.synthetic import generate_clip

    clip = generate_clip(1, family="drum", seconds=1.5)
    src = tmp_path / "in.mp4"
    write_mp4(src, clip.frames, clip.fps)  # no sound: v2a must not need one
    out = tmp_path / "v2a.mp4"
    generate.main(["--model", bundle_path, "--mode", "v2a", "--video", str(src), "--prompt", "drums", "--steps", "2",
                   "--quiet", "--out", str(out)])
    assert probe_streams(out)["video"]["frames"] == clip.num_frames
    assert "audio" in probe_streams(out)


def test_a2v_without_audio_is_a_clear_usage_error(bundle_path, tmp_path):
    with pytest.raises(SystemExit, match="pass --audio FILE"):
        generate.main(["--model", bundle_path, "--mode", "a2v", "--prompt", "x", "--out", str(tmp_path / "o.mp4")])


def test_eval_prints_a_table_per_mode_on_the_same_seeds(bundle_path, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(p) for p in ({"family": "flash", "seed": 3}, {"prompt": "a beep"},
                                                           {"family": "flash", "seed": 4})) + "\n")
    report = tmp_path / "r.json"
    eval_cli.main(["--model", bundle_path, "--prompts", str(prompts), "--steps", "1", "--seconds", "1",
                   "--json", str(report), "--strip", str(tmp_path / "strip.png"), "--strip-clips", "1"])
    table = capsys.readouterr().out
    assert "| cfg" in table and "| sync" in table
    # the synthetic scene also gets its ceilings: the rendered truth and the VAE round trip
    assert "| (truth) | flash | 2 |" in table and "| (vae) | flash | 2 |" in table
    assert "Cross-modal reliance" in table and "| 0.30 |" in table
    from PIL import Image

    width, height = Image.open(tmp_path / "strip.png").size  # one strip per mode, stacked
    assert height > 2 * 24 and width > 0
    clips = json.loads(report.read_text())["clips"]
    assert [c["seed"] for c in clips if c["mode"] == "cfg"] == [c["seed"] for c in clips if c["mode"] == "sync"]


def test_a_bad_prompts_line_names_the_file_and_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2 is not valid JSON"):
        eval_cli.load_prompts(str(bad))


def test_the_shipped_eval_prompts_are_valid_synthetic_scenes():
    from harmony_core.cli.common import DEFAULT_MODEL

    items = eval_cli.load_prompts(str(DEFAULT_MODEL.parent / "eval_prompts.jsonl"))
    assert len(items) == 48 and {i["family"] for i in items} == {"ball", "face", "flash", "drum"}
    assert all(i["transcript"] for i in items if i["family"] == "face")


@pytest.mark.parametrize("task", ["a2v", "v2a"])
def test_eval_a2v_v2a_keep_each_scenes_true_stream(bundle_path, tmp_path, capsys, monkeypatch, task):
    from harmony_core.data.synthetic import generate_clip
    from harmony_core.engine import HarmonyEngine

    seen = []
    real = HarmonyEngine.generate

    def spy(self, prompt, **kw):
        seen.append(kw)
        return real(self, prompt, **kw)

    monkeypatch.setattr(HarmonyEngine, "generate", spy)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"family": "drum", "seed": 5}) + "\n")
    report = tmp_path / "r.json"
    eval_cli.main(["--model", bundle_path, "--prompts", str(prompts), "--task", task, "--modes", "sync", "--steps",
                   "1", "--seconds", "1", "--json", str(report), "--no-references"])
    truth = generate_clip(5, family="drum", seconds=1.0)
    (kw,) = seen
    assert kw["mode"] == task
    if task == "a2v":
        assert torch.equal(kw["audio"][0][0], truth.waveform) and kw["audio"][1] == truth.sample_rate
    else:
        assert torch.equal(kw["video"][0], truth.frames) and kw["video"][1] == truth.fps
    assert f"{task}: 1 prompts" in capsys.readouterr().out
    assert json.loads(report.read_text())["clips"][0]["task"] == task


def test_eval_a2v_refuses_free_text_prompts_before_generating(bundle_path, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a beep"}) + "\n")
    with pytest.raises(ValueError, match=r"--task a2v keeps a synthetic scene's true audio.*'a beep'.*--task t2av"):
        eval_cli.main(["--model", bundle_path, "--prompts", str(prompts), "--task", "a2v"])


def test_guidance_modes_build_the_documented_guidance():
    sync_text = generate.guidance_from_args("sync+text", None, None, 2.5)
    assert (sync_text.video_sync_scale, sync_text.audio_sync_scale) == (3.0, 2.0)
    assert (sync_text.video_text_scale, sync_text.audio_text_scale) == (2.5, 2.5) and sync_text.uses_negative
    cfg = generate.guidance_from_args("cfg", 4.0, None)
    assert (cfg.video_text_scale, cfg.audio_text_scale, cfg.video_sync_scale) == (4.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="'synccfg' is unknown: expected one of"):
        generate.guidance_from_args("synccfg", None, None)


def test_eval_refuses_an_unknown_guidance_mode_before_loading_the_model(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"family": "flash", "seed": 3}) + "\n")
    with pytest.raises(ValueError, match="'text' is unknown; expected .*sync\\+text"):
        eval_cli.main(
            ["--model", str(tmp_path / "missing.safetensors"), "--prompts", str(prompts), "--modes", "sync,text"]
        )
