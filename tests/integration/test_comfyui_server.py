"""Integration tier: a real ComfyUI, headless on the CPU, with this pack (skipped without one).

    COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/integration -q

Starts ``main.py --cpu`` with an ``extra_model_paths.yaml`` that adds a ``custom_nodes`` folder
holding a symlink to this repository and a ``harmony`` model folder, with temporary input, output,
user and temp folders (the checkout is not written to). Checks that every Harmony node registers
without an import error and that the help pages and workflow templates are served, then runs each
workflow in ``workflows/`` through the HTTP API (``/prompt``, ``/history``) and checks that each
SaveVideo wrote an MP4 with a video and an audio stream.

The model is the shipped ``harmony_core/assets/harmony-tiny.safetensors`` when present, else the
bundle named by ``HARMONY_IT_MODEL``, else a small random bundle, put under the shipped name into
the temporary ``harmony`` folder. Set
``HARMONY_IT_REPORT=path.json`` to save timings and stream facts; ``HARMONY_IT_THREADS`` sets the
server's torch threads (default 1: tiny models on a shared CPU run fastest single-threaded).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES_TESTS = ROOT / "tests" / "nodes"
COMFYUI = os.environ.get("COMFYUI_PATH", "")
PACK_FOLDER = "ComfyUI-Harmony"
WORKFLOWS = ["harmony_t2av", "harmony_a2v", "harmony_v2a", "harmony_chain"]
HARMONY_IDS = {
    "HarmonyModelLoader", "HarmonyTextEncode", "HarmonyEmptyAVLatent", "HarmonyVAEEncodeVideo", "HarmonyVAEDecodeVideo",
    "HarmonyVAEEncodeAudio", "HarmonyVAEDecodeAudio", "HarmonyAVLatentCombine", "HarmonyAVLatentSplit",
    "HarmonyAudioToVideo", "HarmonyVideoToAudio", "HarmonySyncCFGGuider", "HarmonyCFGGuider", "HarmonySampler",
    "HarmonySyncScore",
}
SHIPPED = ROOT / "harmony_core" / "assets" / "harmony-tiny.safetensors"
REPORT: dict = {"workflows": {}}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (COMFYUI and (Path(COMFYUI) / "main.py").is_file()),
                       reason="set COMFYUI_PATH to a ComfyUI checkout to run the integration tier"),
]


def _load(name: str, path: Path):
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, out: Path) -> None:
        self.url, self.proc, self.log, self.out = url, proc, log, out

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return r.read()

    def json(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{path}: HTTP {e.code}: {e.read().decode()[:2000]}") from e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui_it")
    custom = base / "custom_nodes"
    custom.mkdir()
    (custom / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
    models = base / "models" / "harmony"
    models.mkdir(parents=True)
    other = os.environ.get("HARMONY_IT_MODEL")
    REPORT["model"] = ("shipped harmony-tiny" if SHIPPED.is_file() else other if other else "random test bundle")
    if not SHIPPED.is_file() and other:
        (models / SHIPPED.name).symlink_to(Path(other).resolve())
    elif not SHIPPED.is_file():
        sys.path.insert(0, str(ROOT)) if str(ROOT) not in sys.path else None
        _load("harmony_tiny_bundle", NODES_TESTS / "tiny_bundle.py").make_tiny_bundle(models / SHIPPED.name)
    inputs = base / "input"
    shutil.copytree(ROOT / "workflows" / "inputs", inputs)
    out = base / "output"
    for d in ("output", "temp", "user"):
        (base / d).mkdir(exist_ok=True)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"harmony_it:\n  custom_nodes: {custom}\n  harmony: {models}\n")
    port = _free_port()
    log = base / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("HARMONY_IT_THREADS", "1"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--extra-model-paths-config", str(yaml), "--input-directory", str(inputs), "--output-directory", str(out),
           "--temp-directory", str(base / "temp"), "--user-directory", str(base / "user"),
           "--database-url", "sqlite:///:memory:"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=COMFYUI, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    srv = Server(f"http://127.0.0.1:{port}", proc, log, out)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                srv.get("/system_stats")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"ComfyUI did not start in 150 s:\n{log.read_text()[-4000:]}")
        REPORT["startup_s"] = round(time.time() - t0, 1)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if os.environ.get("HARMONY_IT_REPORT"):
            Path(os.environ["HARMONY_IT_REPORT"]).write_text(json.dumps(REPORT, indent=1))


@pytest.fixture(scope="module")
def object_info(server):
    return json.loads(server.get("/object_info"))


def test_every_harmony_node_registers_without_an_import_error(server, object_info):
    log = server.log.read_text()
    assert "IMPORT FAILED" not in log and "Cannot import" not in log, log[-3000:]
    assert HARMONY_IDS <= set(object_info)
    assert {object_info[i]["python_module"] for i in HARMONY_IDS} == {f"custom_nodes.{PACK_FOLDER}"}
    assert "harmony-tiny.safetensors" in object_info["HarmonyModelLoader"]["input"]["required"]["model_name"][1][
        "options"]


def test_help_pages_and_workflow_templates_are_served(server):
    page = server.get(f"/extensions/{PACK_FOLDER}/docs/HarmonySyncCFGGuider.md").decode()
    assert page.startswith("# Harmony SyncCFG Guider")
    templates = json.loads(server.get("/workflow_templates"))
    assert set(WORKFLOWS) <= set(templates.get(PACK_FOLDER, []))


def _streams(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        return {"video": [(s.codec_context.name, s.frames, s.average_rate and float(s.average_rate))
                          for s in c.streams.video],
                "audio": [(s.codec_context.name, s.sample_rate) for s in c.streams.audio],
                "seconds": round(float(c.duration or 0) / 1e6, 3)}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_the_workflow_runs_and_saves_an_mp4_with_video_and_audio(server, object_info, name):
    check = _load("harmony_workflow_check", NODES_TESTS / "workflow_check.py")
    workflow = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    assert check.check_workflow(workflow, object_info) == []
    prompt = check.to_api(workflow, object_info)
    t0 = time.time()
    queued = server.json("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4()),
                                     "extra_data": {"extra_pnginfo": {"workflow": workflow}}})
    assert queued["node_errors"] == {}
    pid = queued["prompt_id"]
    entry = None
    while time.time() - t0 < 1800:
        hist = server.json(f"/history/{pid}")
        entry = hist.get(pid)
        if entry and entry["status"].get("completed") is not None and entry["status"]["status_str"] != "running":
            break
        time.sleep(1)
    seconds = round(time.time() - t0, 1)
    assert entry is not None, f"{name} did not finish in 30 min:\n{server.log.read_text()[-3000:]}"
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"])[-3000:]
    saved = [f for out in entry["outputs"].values() for f in out.get("images", [])
             if f.get("filename", "").endswith(".mp4")]
    expected = sum(1 for v in prompt.values() if v["class_type"] == "SaveVideo")
    assert len(saved) == expected
    facts = []
    for f in saved:
        streams = _streams(server.out / f["subfolder"] / f["filename"])
        assert streams["video"] and streams["audio"], streams
        assert streams["video"][0][1] > 1 and streams["seconds"] > 0.5
        facts.append(dict(streams, file=f["filename"]))
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    REPORT["workflows"][name] = {"seconds": seconds, "mp4": facts, "sync_score": texts}
