"""Every node's schema: prefixed unique ids, categories, docs on every socket, defaults within bounds,
and a help page per node."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "nodes" / "web" / "docs"
CORE_NODES = Path(__file__).resolve().parent / "fixtures" / "core_nodes_v0.26.json"


def _infos(node_list):
    return {cls.GET_SCHEMA().node_id: (cls, cls.GET_SCHEMA(), cls.GET_NODE_INFO_V1()) for cls in node_list}


def test_the_extension_lists_every_node_once_with_a_harmony_prefixed_id(node_list):
    ids = [cls.GET_SCHEMA().node_id for cls in node_list]
    assert len(ids) == len(set(ids)) == 15
    assert all(i.startswith("Harmony") for i in ids)


def test_no_node_id_collides_with_a_core_comfyui_node(node_list):
    core = set(json.loads(CORE_NODES.read_text())["all_node_ids"])
    assert not core & {cls.GET_SCHEMA().node_id for cls in node_list}


def test_every_node_has_a_category_display_name_and_description(node_list):
    for node_id, (_, schema, _) in _infos(node_list).items():
        assert schema.category.startswith("Harmony/"), node_id
        assert schema.display_name and schema.display_name.startswith("Harmony"), node_id
        assert len(schema.description) > 40, node_id


def test_every_input_and_output_has_a_tooltip(node_list):
    for node_id, (_, schema, _) in _infos(node_list).items():
        for socket in schema.inputs + schema.outputs:
            assert socket.tooltip and len(socket.tooltip) > 10, f"{node_id}.{socket.id or socket.display_name}"


def test_every_widget_default_lies_within_its_bounds_and_options(node_list):
    for node_id, (_, _, info) in _infos(node_list).items():
        for section in ("required", "optional"):
            for name, (kind, opts) in info["input"].get(section, {}).items():
                where = f"{node_id}.{name}"
                if kind in ("INT", "FLOAT"):
                    assert "default" in opts and "min" in opts and "max" in opts and "step" in opts, where
                    assert opts["min"] <= opts["default"] <= opts["max"], where
                    if kind == "INT":
                        assert all(isinstance(opts[k], int) for k in ("default", "min", "max", "step")), where
                if kind == "COMBO":
                    assert opts["options"], where
                    assert opts.get("default", opts["options"][0]) in opts["options"], where


def test_optional_inputs_have_python_defaults_in_execute(node_list):
    """ComfyUI passes only the inputs present in a prompt: an unconnected optional socket must not
    break ``execute``."""
    import inspect

    for node_id, (cls, schema, _) in _infos(node_list).items():
        params = inspect.signature(cls.execute).parameters
        for inp in schema.inputs:
            assert inp.id in params, f"{node_id}.execute lacks {inp.id}"
            if inp.optional:
                assert params[inp.id].default is not inspect.Parameter.empty, f"{node_id}.{inp.id}"


def test_every_node_has_a_help_page_that_mentions_its_inputs(node_list):
    for node_id, (_, schema, _) in _infos(node_list).items():
        page = DOCS / f"{node_id}.md"
        assert page.is_file(), f"missing help page {page}"
        text = page.read_text()
        assert text.startswith(f"# {schema.display_name}"), node_id
        for inp in schema.inputs:
            assert f"`{inp.id}`" in text, f"{page.name} does not document {inp.id}"


def test_the_root_init_serves_the_help_pages_folder(pack):
    assert (ROOT / pack.WEB_DIRECTORY).resolve() == DOCS.parent
