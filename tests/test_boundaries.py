"""House rules, checked on the source tree: one-way dependencies and thin nodes."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMFY_MODULES = ("comfy", "comfy_api", "comfy_extras", "folder_paths", "node_helpers", "latent_preview", "server")


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.level if hasattr(node, "level") else 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level))
    return out


def test_harmony_core_never_imports_comfyui_or_the_nodes():
    for path in (ROOT / "harmony_core").rglob("*.py"):
        for name, level in _imports(path):
            top = name.split(".")[0]
            assert not (level == 0 and top in COMFY_MODULES), f"{path} imports {name}"
            assert not (level >= 2 and top == "nodes"), f"{path} imports the node pack"


def test_harmony_core_imports_itself_only_relatively():
    for path in (ROOT / "harmony_core").rglob("*.py"):
        for name, level in _imports(path):
            assert not (level == 0 and name.split(".")[0] == "harmony_core"), f"{path}: absolute import {name}"


def test_nodes_do_no_tensor_maths():
    banned = {"torch.nn.functional", "einops"}
    for path in (ROOT / "nodes").rglob("*.py"):
        for name, _ in _imports(path):
            assert name not in banned, f"{path} imports {name}: maths belongs in harmony_core"


def test_the_root_init_only_defines_the_comfyui_entry_point():
    tree = ast.parse((ROOT / "__init__.py").read_text())
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert defs == ["comfy_entrypoint"]
    assigned = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert assigned in ([], ["WEB_DIRECTORY"]), f"the root __init__ may only set WEB_DIRECTORY, found {assigned}"
