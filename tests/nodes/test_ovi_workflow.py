"""Static checks of ``workflows/harmony_ovi_t2av.json``: valid against the node definitions (ours and
ComfyUI 0.26's core ones) once the files it names are in the model folders, wired through core
loaders, our SyncCFG guider and core SamplerCustomAdvanced, at Ovi's native clip size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE.parents[1] / "workflows"
NAME = "harmony_ovi_t2av"
# The files the README tells users to download (the combos list whatever is in the model folders).
FILES = {("HarmonyModelLoader", "model_name"): "model.safetensors",
         ("CLIPLoader", "clip_name"): "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
         ("VAELoader", "vae_name"): ["wan2.2_vae.safetensors", "mmaudio_16k_vae_bigvgan.safetensors"]}


@pytest.fixture(scope="module")
def infos(node_list):
    data = json.loads((HERE / "fixtures" / "core_nodes_v0.26.json").read_text())
    out = json.loads(json.dumps(data["nodes"]))
    out.update({cls.GET_SCHEMA().node_id: cls.GET_NODE_INFO_V1() for cls in node_list})
    for (node, widget), names in FILES.items():  # as if the user had put the files in place
        spec = out[node]["input"]["required"][widget]
        names = names if isinstance(names, list) else [names]
        if isinstance(spec[0], list):
            spec[0] = spec[0] + names
        else:
            spec[1]["options"] = spec[1]["options"] + names
    return out


@pytest.fixture(scope="module")
def workflow():
    return json.loads((WORKFLOWS / f"{NAME}.json").read_text())


def test_the_ovi_workflow_is_valid_and_ships_its_thumbnail(workflow, infos, check):
    assert workflow["version"] == 0.4 and workflow["last_link_id"] == len(workflow["links"])
    assert check.check_workflow(workflow, infos, WORKFLOWS / "inputs") == []
    assert (WORKFLOWS / f"{NAME}.jpg").is_file()


def test_without_the_files_the_checker_names_each_missing_model(workflow, node_list, check):
    data = json.loads((HERE / "fixtures" / "core_nodes_v0.26.json").read_text())
    bare = dict(data["nodes"], **{c.GET_SCHEMA().node_id: c.GET_NODE_INFO_V1() for c in node_list})
    errors = check.check_workflow(workflow, bare, WORKFLOWS / "inputs")
    assert len(errors) == 4 and all("not one of" in e for e in errors)
    assert any("model_name='model.safetensors'" in e for e in errors)


def test_the_ovi_workflow_uses_core_loaders_our_guider_and_core_sampling(workflow, infos, check):
    prompt = check.to_api(workflow, infos)
    by_type: dict[str, list[dict]] = {}
    for v in prompt.values():
        by_type.setdefault(v["class_type"], []).append(v)
    assert by_type["HarmonyModelLoader"][0]["inputs"]["model_name"] == "model.safetensors"
    assert by_type["CLIPLoader"][0]["inputs"] == {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                  "type": "wan"}
    assert sorted(v["inputs"]["vae_name"] for v in by_type["VAELoader"]) == sorted(FILES[("VAELoader", "vae_name")])
    vae_id = {v["inputs"]["vae_name"]: k for k, v in prompt.items() if v["class_type"] == "VAELoader"}
    video_vae, audio_vae = [vae_id["wan2.2_vae.safetensors"], 0], [vae_id["mmaudio_16k_vae_bigvgan.safetensors"], 0]
    for node in ("HarmonyEmptyAVLatent", "HarmonySyncCFGGuider"):
        assert by_type[node][0]["inputs"]["video_vae"] == video_vae
        assert by_type[node][0]["inputs"]["audio_vae"] == audio_vae
    assert by_type["HarmonyVAEDecodeVideo"][0]["inputs"]["video_vae"] == video_vae
    assert by_type["HarmonyVAEDecodeAudio"][0]["inputs"]["audio_vae"] == audio_vae
    text = by_type["HarmonyTextEncode"][0]["inputs"]
    clip_id = next(k for k, v in prompt.items() if v["class_type"] == "CLIPLoader")
    assert text["clip"] == [clip_id, 0] and "text_encoders" not in text and text["audio_caption"] == ""
    assert "<S>" in text["video_prompt"] and "<AUDCAP>" in text["video_prompt"]  # Ovi's prompt format
    empty = by_type["HarmonyEmptyAVLatent"][0]["inputs"]
    # Ovi's 720x720 model snaps a square request to multiples of 32 (704), 121 frames at 24 fps = 5 s
    assert (empty["width"], empty["height"], empty["frames"], empty["fps"]) == (704, 704, 121, 24.0)
    guider = by_type["HarmonySyncCFGGuider"][0]["inputs"]
    assert (guider["video_scale"], guider["audio_scale"]) == (3.0, 2.0)
    sca = by_type["SamplerCustomAdvanced"][0]["inputs"]
    assert prompt[sca["guider"][0]]["class_type"] == "HarmonySyncCFGGuider"
    assert {prompt[sca[k][0]]["class_type"] for k in ("noise", "sampler", "sigmas")} == {
        "RandomNoise", "KSamplerSelect", "BasicScheduler"}
    save = by_type["SaveVideo"][0]["inputs"]
    create = prompt[save["video"][0]]
    assert create["class_type"] == "CreateVideo" and {"images", "audio", "fps"} <= set(create["inputs"])
    assert save["filename_prefix"].startswith(f"video/{NAME}")
