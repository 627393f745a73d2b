"""``python -m harmony_core build-default`` end to end, on a recipe shrunk to seconds.

The real recipe (``RECIPE``) trains for over an hour; here the same code path runs with a few
steps: both VAEs trained one after the other in subprocesses, then the DiT stages on their latents
(encoded once; the refine stage starts from the first), then the bundle written in fp16, and it loads and generates.
"""

from __future__ import annotations

import pytest
import torch

from harmony_core.cli import build_default


def test_the_recipe_names_real_options_of_the_commands_it_drives():
    from harmony_core.training.stages import get_stage

    assert get_stage(build_default.RECIPE["dit"][build_default.RECIPE["dit"].index("--preset") + 1])
    for modality in ("audio", "video"):
        flags = [a for a in build_default.RECIPE[f"{modality}_vae"] if a.startswith("--")]
        from harmony_core.vae import train as vae_train

        with pytest.raises(SystemExit) as exc:  # argparse accepts the flags, then --help exits 0
            vae_train.main([modality, "--out", "x.safetensors", *build_default.RECIPE[f"{modality}_vae"], "--help"])
        assert exc.value.code == 0 and flags


def test_build_default_trains_both_vaes_then_the_dit_and_writes_a_loadable_bundle(tmp_path, monkeypatch):
    small = ["--steps", "2", "--clips", "2", "--report-clips", "1", "--batch-size", "2", "--log-every", "1"]
    monkeypatch.setattr(build_default, "RECIPE", {
        "audio_vae": small,
        "video_vae": [*small, "--frames", "5", "--crop", "16", "--motion-weight", "4"],
        "dit": ["--preset", "tiny", "--clips", "2", "data.seconds=0.5"],
        "dit_refine": ["--preset", "tiny", "--clips", "2", "data.seconds=0.5", "lr=1e-4"],
    })
    out = tmp_path / "model.safetensors"
    assert build_default.main(["--out", str(out), "--work", str(tmp_path / "work")]) == 0
    assert (tmp_path / "work" / "audio_vae.log").read_text().count("step") >= 2
    # the refine stage started from the first stage's weights and the bundle is the refined one
    from harmony_core.io.checkpoints import read_metadata

    info = read_metadata(str(out))["info"]
    assert "lr=1e-4" in info and "--init" in info
    assert "--latents" in info and (tmp_path / "work" / "latents.safetensors").is_file()  # encoded once
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:  # stored in fp16, like the shipped file
        assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F16", "I64", "BOOL", "I32"}
    from harmony_core.engine import HarmonyEngine

    engine = HarmonyEngine.from_file(str(out))
    result = engine.generate("a red ball", seconds=0.5, steps=1, seed=0)
    assert torch.isfinite(result.frames).all() and result.waveform.shape[-1] > 0


def test_the_shipped_model_was_built_by_the_current_recipe():
    """The README's one-command rebuild holds: the shipped bundle records the refine stage's command,
    which is ``RECIPE['dit_refine']`` (every argument), and the preset's training settings."""
    import json
    from pathlib import Path

    from harmony_core.io.checkpoints import read_metadata
    from harmony_core.training.stages import get_stage

    shipped = Path(build_default.__file__).resolve().parents[1] / "assets" / "harmony-tiny.safetensors"
    info = json.loads(read_metadata(str(shipped))["info"])
    command = info["command"].split()
    assert command[command.index("train") + 1:][:len(build_default.RECIPE["dit_refine"])] == \
        build_default.RECIPE["dit_refine"]
    preset = get_stage("synthetic").train
    for name in ("batch_size", "shift", "cond_drop", "warmup", "lr_schedule", "ema_decay"):
        overridden = any(a.startswith(f"{name}=") for a in build_default.RECIPE["dit_refine"])
        assert overridden or info["train_config"][name] == getattr(preset, name), name
