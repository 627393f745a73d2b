"""Static checks of UI-format workflows against node definitions, and UI -> API conversion (what
the frontend's ``graphToPrompt`` does), shared by the workflow tests and the integration tier.

Node definitions are ``/object_info`` entries: ours from the pack's schemas, core ones from the
committed fixture (or a live server).
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_KEYS = ("audio_upload", "video_upload", "image_upload")


def _spec(info: dict, name: str) -> tuple[str, dict, bool]:
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            kind, opts = info["input"][section][name][:2] if len(info["input"][section][name]) > 1 else (
                info["input"][section][name][0], {})
            return ("COMBO" if isinstance(kind, list) else kind), dict(opts, **(
                {"options": kind} if isinstance(kind, list) else {})), section == "optional"
    raise KeyError(name)


def widget_layout(info: dict) -> list[tuple[str, int]]:
    """Widget inputs in ``widgets_values`` order with the number of UI-only values after each."""
    out = []
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            kind, opts, _ = _spec(info, name)
            if kind not in WIDGETS or opts.get("forceInput"):
                continue
            extra = 0
            if kind in ("INT", "FLOAT") and (opts.get("control_after_generate") or (
                    kind == "INT" and name in ("seed", "noise_seed") and "control_after_generate" not in opts)):
                extra = 1
            elif kind == "COMBO" and opts.get("audio_upload"):
                extra = 2
            elif kind == "COMBO" and (opts.get("video_upload") or opts.get("image_upload")):
                extra = 1
            out.append((name, extra))
    return out


def types_match(out_type: str, in_type: str) -> bool:
    """ComfyUI's rule: comma-separated type lists must overlap (``*`` matches anything)."""
    if "*" in (out_type, in_type):
        return True
    return bool(set(out_type.split(",")) & set(in_type.split(",")))


def _value_error(node: str, name: str, kind: str, opts: dict, value: Any, inputs_dir: Path | None) -> str | None:
    where = f"{node}.{name}={value!r}"
    if kind == "INT" and not (isinstance(value, int) and not isinstance(value, bool)):
        return f"{where}: expected an int"
    if kind == "FLOAT" and not (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return f"{where}: expected a number"
    if kind in ("INT", "FLOAT"):
        if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
            return f"{where}: outside [{opts.get('min')}, {opts.get('max')}]"
    if kind == "STRING" and not isinstance(value, str):
        return f"{where}: expected a string"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{where}: expected a boolean"
    if kind == "COMBO":
        if any(opts.get(k) for k in UPLOAD_KEYS):
            if inputs_dir is not None and not (inputs_dir / str(value)).is_file():
                return f"{where}: the pack does not ship this input file in {inputs_dir.name}/"
        elif value not in opts.get("options", []):
            return f"{where}: not one of {opts.get('options')}"
    return None


def check_workflow(wf: dict, infos: dict[str, dict], inputs_dir: Path | None = None) -> list[str]:
    """Every problem of a UI-format workflow (empty list = valid)."""
    errors = []
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {lk[0]: lk for lk in wf["links"]}
    for n in wf["nodes"]:
        t = n["type"]
        if t in VIRTUAL:
            continue
        if t not in infos:
            errors.append(f"node {n['id']}: unknown type {t}")
            continue
        info = infos[t]
        layout = widget_layout(info)
        values = list(n.get("widgets_values") or [])
        optional = [_spec(info, name)[2] for name, _ in layout]
        # Missing trailing *optional* widgets are fine (the frontend fills in their defaults).
        allowed = {sum(1 + e for _, e in layout[:k]) for k in range(len(layout) + 1) if all(optional[k:])}
        if len(values) not in allowed:
            errors.append(f"{t} #{n['id']}: {len(values)} widget values for widgets {layout}")
            continue
        for name, extra in layout:
            if not values:
                break
            value = values.pop(0)
            kind, opts, _ = _spec(info, name)
            err = _value_error(f"{t} #{n['id']}", name, kind, opts, value, inputs_dir)
            if err:
                errors.append(err)
            extras = [values.pop(0) for _ in range(extra)]
            if extra == 1 and kind in ("INT", "FLOAT") and extras[0] not in CONTROL:
                errors.append(f"{t} #{n['id']}.{name}: control value {extras[0]!r} not in {sorted(CONTROL)}")
        linked = {i["name"]: i for i in n.get("inputs", [])}
        for section in ("required",):
            for name in info["input_order"].get(section, []):
                kind, opts, _ = _spec(info, name)
                is_socket = kind not in WIDGETS or opts.get("forceInput")
                if is_socket and (name not in linked or linked[name]["link"] is None):
                    errors.append(f"{t} #{n['id']}: required input {name} is not connected")
        for slot, inp in enumerate(n.get("inputs", [])):
            if inp.get("link") is None:
                continue
            lk = links.get(inp["link"])
            if lk is None or lk[3] != n["id"] or lk[4] != slot:
                errors.append(f"{t} #{n['id']}.{inp['name']}: link {inp['link']} does not point here")
                continue
            src = nodes.get(lk[1])
            if src is None or src["type"] not in infos:
                errors.append(f"link {lk[0]}: unknown source node {lk[1]}")
                continue
            out_type = infos[src["type"]]["output"][lk[2]]
            in_type = _spec(info, inp["name"])[0]
            if lk[5] != out_type or not types_match(out_type, in_type):
                errors.append(f"link {lk[0]}: {src['type']} output {lk[2]} ({out_type}) -> {t}.{inp['name']} "
                              f"({in_type}); link says {lk[5]}")
            if lk[0] not in (src["outputs"][lk[2]].get("links") or []):
                errors.append(f"link {lk[0]} missing from {src['type']} #{src['id']} output {lk[2]}")
    return errors


def to_api(wf: dict, infos: dict[str, dict]) -> dict[str, dict]:
    """The API prompt of a UI workflow (virtual nodes dropped, widget values by name, links as
    ``[node_id, slot]``)."""
    links = {lk[0]: lk for lk in wf["links"]}
    prompt = {}
    for n in wf["nodes"]:
        if n["type"] in VIRTUAL or n.get("mode", 0) in (2, 4):
            continue
        info = infos[n["type"]]
        values = list(n.get("widgets_values") or [])
        inputs: dict[str, Any] = {}
        for name, extra in widget_layout(info):
            if not values:
                break  # trailing optional widgets at their defaults
            inputs[name] = values.pop(0)
            del values[:extra]
        for inp in n.get("inputs", []):
            if inp.get("link") is not None:
                lk = links[inp["link"]]
                inputs[inp["name"]] = [str(lk[1]), lk[2]]
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs,
                                "_meta": {"title": n.get("title", info.get("display_name") or n["type"])}}
    return prompt
