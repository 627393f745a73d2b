"""Static checks of the shipped workflows: every node type exists (ours or the core nodes they
name), widget values fit the schemas, link types match, required sockets are connected, each ends
in core CreateVideo -> SaveVideo, defaults to the shipped model and ships its thumbnail and inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKFLOWS = ROOT / "workflows"
NAMES = ["harmony_t2av", "harmony_a2v", "harmony_v2a", "harmony_chain"]


@pytest.fixture(scope="module")
def infos(node_list):
    data = json.loads((HERE / "fixtures" / "core_nodes_v0.26.json").read_text())
    out = dict(data["nodes"])
    out.update({cls.GET_SCHEMA().node_id: cls.GET_NODE_INFO_V1() for cls in node_list})
    return out


def _load(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_the_workflow_is_valid_against_the_node_definitions(name, check, infos):
    wf = _load(name)
    assert wf["version"] == 0.4 and wf["last_link_id"] == len(wf["links"])
    assert check.check_workflow(wf, infos, WORKFLOWS / "inputs") == []


@pytest.mark.parametrize("name", NAMES)
def test_the_workflow_ends_in_core_create_video_and_save_video_with_sound(name, infos, check):
    prompt = check.to_api(_load(name), infos)
    saves = [k for k, v in prompt.items() if v["class_type"] == "SaveVideo"]
    assert saves
    for k in saves:
        create = prompt[prompt[k]["inputs"]["video"][0]]
        assert create["class_type"] == "CreateVideo" and "audio" in create["inputs"] and "images" in create["inputs"]
        assert prompt[k]["inputs"]["filename_prefix"].startswith(f"video/{name}")


@pytest.mark.parametrize("name", NAMES)
def test_the_workflow_uses_the_shipped_model_and_ships_a_thumbnail(name, infos, check):
    prompt = check.to_api(_load(name), infos)
    loaders = [v for v in prompt.values() if v["class_type"] == "HarmonyModelLoader"]
    assert [v["inputs"]["model_name"] for v in loaders] == ["harmony-tiny.safetensors"]
    assert (WORKFLOWS / f"{name}.jpg").is_file()


def test_the_api_conversion_keeps_links_and_widget_names(infos, check):
    prompt = check.to_api(_load("harmony_v2a"), infos)
    enc = next(v for v in prompt.values() if v["class_type"] == "HarmonyVAEEncodeVideo")
    parts_id = next(k for k, v in prompt.items() if v["class_type"] == "GetVideoComponents")
    assert enc["inputs"]["fps"] == [parts_id, 2]  # the converted fps widget follows its link
    noise = next(v for v in prompt.values() if v["class_type"] == "RandomNoise")
    assert noise["inputs"] == {"noise_seed": 0}  # the control_after_generate value is UI-only
    assert "MarkdownNote" not in {v["class_type"] for v in prompt.values()}


def test_the_checker_catches_a_wrong_link_type_and_a_value_out_of_bounds(infos, check):
    wf = _load("harmony_t2av")
    empty = next(n for n in wf["nodes"] if n["type"] == "HarmonyEmptyAVLatent")
    empty["widgets_values"][0] = 5000  # width above its max
    link = next(lk for lk in wf["links"] if lk[5] == "GUIDER")
    sca = next(n for n in wf["nodes"] if n["id"] == link[3])
    sca["inputs"][link[4]]["name"] = "sigmas"  # a GUIDER wired into a SIGMAS socket
    errors = check.check_workflow(wf, infos, WORKFLOWS / "inputs")
    assert any("width=5000" in e for e in errors) and any("(GUIDER) -> SamplerCustomAdvanced.sigmas" in e
                                                          for e in errors)
