"""Fixtures for the node tests: ComfyUI fakes (or a real ComfyUI on sys.path), the pack imported
the way ComfyUI imports it (as a package, so its relative imports work), and a tiny random
Harmony bundle in a temporary ``harmony`` model folder."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PACK = "harmony_pack_under_test"
MODEL_NAME = "test-tiny.safetensors"


def load_path(name: str, path: Path):
    """Import a helper module by file path (``tests`` is not a package, and a ComfyUI checkout on
    sys.path brings its own ``tests`` package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


if os.environ.get("COMFYUI_PATH") and os.environ["COMFYUI_PATH"] not in sys.path:
    # Run the same tests against a real ComfyUI (appended, so this repo's modules win).
    sys.path.append(os.environ["COMFYUI_PATH"])
STUBS = load_path("harmony_comfy_stubs", HERE / "comfy_stubs.py")
TINY = load_path("harmony_tiny_bundle", HERE / "tiny_bundle.py")


def import_pack():
    """The pack's root package, imported like ComfyUI's ``load_custom_node`` does."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = mod
        spec.loader.exec_module(mod)
    return sys.modules[PACK]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared CPU: one thread is many times faster than contended threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def comfy() -> bool:
    """Install the ComfyUI fakes (only when a node test asks for them); True when faked."""
    return STUBS.install()


@pytest.fixture(scope="session")
def pack(comfy):
    return import_pack()


@pytest.fixture(scope="session")
def nodes(pack):
    return importlib.import_module(f"{PACK}.nodes")


@pytest.fixture(scope="session")
def node_list(pack):
    ext = asyncio.run(pack.comfy_entrypoint())
    asyncio.run(ext.on_load())
    return asyncio.run(ext.get_node_list())


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, pack):
    """A ``harmony`` model folder holding the tiny random bundle, registered with folder_paths."""
    import folder_paths

    folder = tmp_path_factory.mktemp("harmony_models")
    TINY.make_tiny_bundle(folder / MODEL_NAME)
    folder_paths.folder_names_and_paths["harmony"] = ([str(folder)], {".safetensors"})
    return folder


@pytest.fixture(scope="session")
def loaded(nodes, model_dir):
    """``(MODEL, text_encoders, video_vae, audio_vae)`` from Harmony Model Loader."""
    with torch.inference_mode(False):
        return nodes.HarmonyModelLoader.execute(MODEL_NAME, "default").args


@pytest.fixture(scope="session")
def positive(nodes, loaded):
    return nodes.HarmonyTextEncode.execute("a red ball bounces on a wooden floor", "knocks on wood", "",
                                           text_encoders=loaded[1]).args[0]


@pytest.fixture
def av_latent(nodes, loaded):
    """An empty 32x32 clip of 9 frames (3 video latent frames, 12 audio latents)."""
    return nodes.HarmonyEmptyAVLatent.execute(loaded[2], loaded[3], 32, 32, 0.0, 9, 24.0, 1).args[0]


@pytest.fixture(scope="session")
def check():
    """The workflow checker / UI->API converter (``workflow_check.py``)."""
    return load_path("harmony_workflow_check", HERE / "workflow_check.py")
