"""``key=value`` overrides of frozen config dataclasses, type-checked, without ``exec`` or ``eval``.

Keys address fields by section: bare keys are ``TrainConfig`` fields (``lr=1e-4``), prefixed keys
reach other sections (``data.seconds=1.0,2.0``, ``model.video.dim=64``,
``model.interaction.local=false``). Values are parsed from the field's annotation:

* ``int``: decimal digits (``1.5`` is refused); ``float``: any Python float literal;
* ``bool``: true/false, yes/no, on/off, 1/0;
* ``str``: taken as is;
* ``tuple[X, ...]`` / ``tuple[X, Y]``: comma-separated items (a fixed-length tuple checks the count);
* ``X | None``: ``none`` gives None.

Every config validates itself afterwards, so a value of the right type but out of range fails with
that config's own message.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

__all__ = ["valid_keys", "parse_value", "apply_overrides"]

_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _leaf_paths(obj: Any, prefix: str) -> list[str]:
    out = []
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += _leaf_paths(value, path + ".")
        elif _parsable(hints.get(f.name)):
            out.append(path)
    return out


def _parsable(ann: Any) -> bool:
    if ann in (int, float, bool, str):
        return True
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is tuple:
        return all(a is Ellipsis or a in (int, float, bool, str) for a in args)
    if origin in (typing.Union, types.UnionType):
        return all(a is type(None) or _parsable(a) for a in args)
    return False


def valid_keys(sections: dict[str, Any]) -> list[str]:
    """Every settable key of ``sections`` (``{"": TrainConfig(...), "data": DataConfig(...), ...}``)."""
    keys = []
    for name, obj in sections.items():
        keys += _leaf_paths(obj, f"{name}." if name else "")
    return keys


def _describe(ann: Any) -> str:
    if ann in (int, float, bool, str):
        return {int: "an int", float: "a float", bool: "a bool (true/false)", str: "a string"}[ann]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"comma-separated {args[0].__name__}s"
        return f"{len(args)} comma-separated values ({', '.join(a.__name__ for a in args)})"
    return " or ".join("none" if a is type(None) else _describe(a) for a in args)


def _example(ann: Any) -> str:
    if ann is bool:
        return "true"
    if ann is int:
        return "10"
    if ann is float:
        return "0.5"
    if ann is str:
        return "text"
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is tuple:
        items = [args[0]] * 2 if len(args) == 2 and args[1] is Ellipsis else list(args)
        return ",".join(_example(a) for a in items)
    return _example(next(a for a in args if a is not type(None)))


def _scalar(text: str, ann: type) -> Any:
    t = text.strip()
    if ann is bool:
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise ValueError(t)
    if ann is int:
        if not t.lstrip("+-").replace("_", "").isdigit():
            raise ValueError(t)
        return int(t)
    if ann is float:
        return float(t)
    return text


def parse_value(text: str, ann: Any, key: str) -> Any:
    """Parse ``text`` as the annotation ``ann`` of field ``key`` (``ValueError`` naming both otherwise)."""
    try:
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin in (typing.Union, types.UnionType):
            if text.strip().lower() in ("none", "null") and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return parse_value(text, inner[0], key) if len(inner) == 1 else text
        if origin is tuple:
            items = [] if not text.strip() else text.split(",")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_scalar(x, args[0]) for x in items)
            if len(items) != len(args):
                raise ValueError(text)
            return tuple(_scalar(x, a) for x, a in zip(items, args))
        return _scalar(text, ann)
    except ValueError:
        raise ValueError(
            f"override {key}={text!r}: expected {_describe(ann)}, e.g. {key}={_example(ann)}."
        ) from None


def _tree(obj: Any) -> dict[str, Any]:
    """Field values of a (nested) dataclass as nested dicts, without validation."""
    return {f.name: _tree(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v
            for f in dataclasses.fields(obj)}


def _rebuild(template: Any, tree: dict[str, Any]) -> Any:
    """Construct ``type(template)`` from ``tree`` (inner dataclasses first; each validates itself)."""
    kwargs = {}
    for f in dataclasses.fields(template):
        value = getattr(template, f.name)
        kwargs[f.name] = _rebuild(value, tree[f.name]) if dataclasses.is_dataclass(value) else tree[f.name]
    return type(template)(**kwargs)


def _set(tree: dict[str, Any], template: Any, path: list[str], text: str, key: str) -> None:
    """Parse ``text`` for the field at ``path`` and store it in ``tree`` (the unvalidated copy)."""
    name = path[0]
    current = getattr(template, name)
    if len(path) > 1:
        _set(tree[name], current, path[1:], text, key)
        return
    if dataclasses.is_dataclass(current):
        first = dataclasses.fields(current)[0].name
        raise ValueError(
            f"override {key!r} names a section, not a field: set one of its fields, e.g. {key}.{first}=..."
        )
    tree[name] = parse_value(text, _hints(type(template))[name], key)


def apply_overrides(sections: dict[str, Any], pairs: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings to the config sections and return the new sections.

    Args:
        sections: ``{prefix: frozen dataclass}``; the ``""`` prefix takes bare keys.
        pairs: e.g. ``["lr=1e-4", "data.seconds=1,2", "model.video.dim=64"]``.

    Returns:
        The sections with the overrides applied (each re-validated by its ``__post_init__``).

    Raises:
        ValueError: for a malformed pair, an unknown or repeated key (listing the valid ones), a value
            of the wrong type, or a value the config rejects.
    """
    trees = {name: _tree(obj) for name, obj in sections.items()}
    keys = valid_keys(sections)
    seen: set[str] = set()
    touched: dict[str, list[str]] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"override {pair!r} is not key=value: write e.g. lr=1e-4 (no spaces around '=').")
        if key in seen:
            raise ValueError(f"override {key!r} is given twice; keep one.")
        seen.add(key)
        if key not in keys:
            children = [k for k in keys if k.startswith(key + ".")]
            if children:
                raise ValueError(f"override {key!r} names a section, not a field: set one of its fields, "
                                 f"e.g. {children[0]}=...")
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown override key {key!r}.{hint} Valid keys: {', '.join(keys)}.")
        parts = key.split(".")
        section, path = (parts[0], parts[1:]) if len(parts) > 1 and parts[0] in sections else ("", parts)
        _set(trees[section], sections[section], path, text, key)
        touched.setdefault(section, []).append(f"{key}={text}")
    out = dict(sections)
    for section, given in touched.items():
        try:  # all of a section's overrides at once, so coupled fields (video.dim, audio.dim) can change together
            out[section] = _rebuild(sections[section], trees[section])
        except (TypeError, ValueError) as e:
            raise ValueError(f"overrides {' '.join(given)}: {e}") from None
    return out
