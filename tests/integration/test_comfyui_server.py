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
``HARMONY_IT_REPORT=path.json`` to save timings and stream facts, ``HARMONY_IT_KEEP=dir`` to copy
each workflow's MP4 there (``<workflow>.mp4``); ``HARMONY_IT_THREADS`` sets the
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
    for folder in ("diffusion_models", "vae", "text_encoders"):  # filled by the Ovi test (listed on demand)
        (base / "models" / folder).mkdir()
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
    yaml.write_text(f"harmony_it:\n  custom_nodes: {custom}\n  harmony: {models}\n"
                    + "".join(f"  {f}: {base / 'models' / f}\n" for f in ("diffusion_models", "vae", "text_encoders")))
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
    srv.models = base / "models"
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


def _run(server: Server, prompt: dict, workflow: dict, name: str) -> tuple[dict, float]:
    """Queue an API prompt and wait for its history entry; ``(entry, seconds)``."""
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
    assert entry is not None, f"{name} did not finish in 30 min:\n{server.log.read_text()[-3000:]}"
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"])[-3000:]
    return entry, round(time.time() - t0, 1)


def _saved_mp4s(server: Server, entry: dict) -> list[dict]:
    saved = [f for out in entry["outputs"].values() for f in out.get("images", [])
             if f.get("filename", "").endswith(".mp4")]
    return [dict(_streams(server.out / f["subfolder"] / f["filename"]), file=f["filename"]) for f in saved]


def _texts(entry: dict, prompt: dict, class_type: str) -> list[str]:
    return [t for k, out in entry["outputs"].items() if prompt.get(k, {}).get("class_type") == class_type
            for t in out.get("text", [])]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_the_workflow_runs_and_saves_an_mp4_with_video_and_audio(server, object_info, name):
    check = _load("harmony_workflow_check", NODES_TESTS / "workflow_check.py")
    workflow = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    assert check.check_workflow(workflow, object_info) == []
    prompt = check.to_api(workflow, object_info)
    entry, seconds = _run(server, prompt, workflow, name)
    facts = _saved_mp4s(server, entry)
    assert len(facts) == sum(1 for v in prompt.values() if v["class_type"] == "SaveVideo")
    for streams in facts:
        assert streams["video"] and streams["audio"], streams
        assert streams["video"][0][1] > 1 and streams["seconds"] > 0.5
    REPORT["workflows"][name] = {"seconds": seconds, "mp4": facts,
                                 "sync_score": _texts(entry, prompt, "HarmonySyncScore")}
    keep = os.environ.get("HARMONY_IT_KEEP")
    if keep:  # e.g. for the workflow thumbnails (tests/nodes/build_workflows.py --thumbnails-from DIR)
        Path(keep).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(facts):
            src = next(server.out.rglob(f["file"]))
            shutil.copyfile(src, Path(keep) / f"{name}{'' if i == 0 else f'_{i}'}.mp4")


# ------------------------------------------------------------------------------------------------
# harmony_ovi_t2av on random weights: Ovi's full structure at reduced width, real core loaders
# ------------------------------------------------------------------------------------------------
OVI = "harmony_ovi_t2av"
OVI_WIDTH = 128  # Ovi: 3072 = 24 heads of 128; here one head of Wan's head width 128
OVI_FFN = round(OVI_WIDTH * 14336 / 3072)  # Ovi's FFN / width ratio
# CLIPLoader type "wan" builds umT5-XXL (5.7 B parameters) from a fixed config whatever the file
# holds, too big to run here; the file written under the umT5 name is T5-base-shaped instead,
# which the same loader (type "wan") detects and runs as ComfyUI's T5-base (768 wide).
T5_BASE_DIM = 768


def _file_names(prompt: dict) -> dict[str, str]:
    """The files the Ovi workflow names: DiT, text encoder, video VAE, audio VAE (by their links)."""
    out = {"dit": next(v["inputs"]["model_name"] for v in prompt.values() if v["class_type"] == "HarmonyModelLoader"),
           "umt5": next(v["inputs"]["clip_name"] for v in prompt.values() if v["class_type"] == "CLIPLoader")}
    empty = next(v for v in prompt.values() if v["class_type"] == "HarmonyEmptyAVLatent")
    for key in ("video_vae", "audio_vae"):
        out[key] = prompt[empty["inputs"][key][0]]["inputs"]["vae_name"]
    return out


def _write_reduced_ovi(path: Path, text_dim: int, seed: int = 0) -> dict:
    """A random DiT in Ovi's key layout with Ovi's structure (30 blocks per tower, fusion, 48 / 20
    latent channels, head width 128, FFN ratio) at width ``OVI_WIDTH``, stored in bf16 as Ovi is."""
    import dataclasses

    import torch
    from safetensors.torch import save_file

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from harmony_core.config import get_preset
    from harmony_core.io.convert import harmony_to_ovi_state
    from tests._helpers import make_tiny_model

    base = get_preset("ovi")
    kw = dict(dim=OVI_WIDTH, ffn_dim=OVI_FFN, num_heads=OVI_WIDTH // 128, text_dim=text_dim)
    cfg = dataclasses.replace(base, video=dataclasses.replace(base.video, **kw),
                              audio=dataclasses.replace(base.audio, **kw), name="ovi-reduced-width")
    model = make_tiny_model(cfg, seed=seed, perturb=0.02)
    sd = harmony_to_ovi_state(model.state_dict())
    save_file({k: v.detach().to(torch.bfloat16).contiguous() for k, v in sd.items()}, str(path))
    return {"params": sum(p.numel() for p in model.parameters()), "layers": cfg.video.num_layers,
            "width": OVI_WIDTH, "ffn": OVI_FFN, "text_dim": text_dim, "keys": len(sd),
            "bytes": path.stat().st_size}


def _make_core_models(video_vae: str, audio_vae: str, text_encoder: str, seed: int = 0) -> dict:
    """Random full-size Wan2.2 VAE and MMAudio 16 kHz VAE (+ BigVGAN vocoder) and a T5-base-shaped
    text encoder, with the key names ComfyUI's own modules have (built on ``meta`` to read them),
    stored in fp16. Runs in a subprocess with ComfyUI importable (``__main__`` below).

    Weights are N(0, 1 / fan_in) (activations stay finite through the deep random nets), norm
    gains 1, biases 0; the MMAudio filters (fixed kaiser-sinc resamplers), Hann window and mel
    basis hold their real values.
    """
    import math

    sys.path.insert(0, COMFYUI)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.ldm.mmaudio.vae.autoencoder as mmaudio
    import comfy.ldm.wan.vae2_2 as wan22
    import comfy.ops
    import comfy.text_encoders.t5 as t5
    import torch
    import torchaudio
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)

    def fill(key: str, ref: torch.Tensor) -> torch.Tensor:
        leaf = key.rsplit(".", 1)[-1]
        if leaf in ("gamma", "learnable_gain", "data_std") or ("norm" in key and leaf == "weight" and ref.dim() == 1):
            return torch.ones(ref.shape, dtype=torch.float16)
        if leaf in ("bias", "beta", "alpha", "data_mean") or ref.dim() < 2:
            return torch.zeros(ref.shape, dtype=torch.float16)
        return (torch.randn(ref.shape, generator=g) / math.sqrt(ref[0].numel())).half()

    facts = {}
    t0 = time.time()
    with torch.device("meta"):
        vae = wan22.WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                           temperal_downsample=[False, True, True], dropout=0.0)
    sd = {k: fill(k, v) for k, v in vae.state_dict().items()}
    save_file(sd, video_vae)
    facts["wan22_vae"] = {"params": sum(v.numel() for v in sd.values()), "keys": len(sd)}
    del sd, vae
    audio = mmaudio.AudioAutoencoder(mode="16k")  # on the CPU: its resampling filters are computed here
    sd = {}
    for k, v in audio.state_dict().items():
        if k.endswith(".filter"):
            sd[k] = v.half()
        elif k == "mel_converter.mel_basis":
            sd[k] = torchaudio.functional.melscale_fbanks(513, 0.0, 8000.0, 80, 16000, norm="slaney",
                                                          mel_scale="slaney").T.contiguous().half()
        elif k == "mel_converter.hann_window":
            sd[k] = torch.hann_window(1024).half()
        else:
            sd[k] = fill(k, v)
    save_file(sd, audio_vae)
    facts["mmaudio_vae"] = {"params": sum(v.numel() for k, v in sd.items() if k not in dict(audio.named_buffers())),
                            "keys": len(sd)}
    del sd, audio
    config = json.loads((Path(COMFYUI) / "comfy" / "text_encoders" / "t5_config_base.json").read_text())
    with torch.device("meta"):
        te = t5.T5(config, torch.float16, "meta", comfy.ops.manual_cast)
    sd = {k: fill(k, v) for k, v in te.state_dict().items()}
    sd["shared.weight"] = torch.randn(sd["shared.weight"].shape, generator=g).half()  # T5 embeddings: unit scale
    save_file(sd, text_encoder)
    facts["t5_base"] = {"params": sum(v.numel() for v in sd.values()), "keys": len(sd)}
    facts["seconds"] = round(time.time() - t0, 1)
    return facts


def test_the_ovi_workflow_runs_on_a_reduced_width_ovi_model_through_core_loaders(server, object_info):
    check = _load("harmony_workflow_check", NODES_TESTS / "workflow_check.py")
    workflow = json.loads((ROOT / "workflows" / f"{OVI}.json").read_text())
    names = _file_names(check.to_api(workflow, object_info))
    models = server.models
    t0 = time.time()
    dit = _write_reduced_ovi(models / "diffusion_models" / names["dit"], T5_BASE_DIM)
    made = subprocess.run([sys.executable, str(Path(__file__).resolve()), "make-core-models",
                           str(models / "vae" / names["video_vae"]), str(models / "vae" / names["audio_vae"]),
                           str(models / "text_encoders" / names["umt5"])],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=1200)
    assert made.returncode == 0, made.stderr[-3000:]
    core = json.loads(made.stdout.strip().splitlines()[-1])
    make_seconds = round(time.time() - t0, 1)
    infos = json.loads(server.get("/object_info"))  # re-listed: the files are now in the folders
    assert check.check_workflow(workflow, infos) == []  # the workflow's own file names, as shipped
    prompt = check.to_api(workflow, infos)
    for v in prompt.values():  # reduced widgets: 64x64, 9 frames (3 video / 11 audio latents), 2 steps
        if v["class_type"] == "HarmonyEmptyAVLatent":
            v["inputs"].update(width=64, height=64, frames=9)
        if v["class_type"] == "BasicScheduler":
            v["inputs"]["steps"] = 2
    entry, seconds = _run(server, prompt, workflow, OVI)
    facts = _saved_mp4s(server, entry)
    assert len(facts) == 1 and facts[0]["video"] and facts[0]["audio"], facts
    codec, frames, rate = facts[0]["video"][0]
    assert (codec, frames, rate) == ("h264", 9, 24.0) and facts[0]["audio"][0][0] == "aac"
    report = _texts(entry, prompt, "HarmonyModelLoader")
    assert report and "ovi layout (architecture read from its keys)" in report[0], report
    assert f"{dit['params'] / 1e6:.1f} M parameters" in report[0] and "runs exactly as Ovi" in report[0]
    log = server.log.read_text()
    # ComfyUI's own loaders recognised the files as the Wan2.2 VAE and the MMAudio VAE (by their keys)
    for cls in ("WanVAE", "AudioAutoencoder", "HarmonyAVModel"):
        assert f"Requested to load {cls}" in log, log[-3000:]
    try:
        import psutil

        rss = round(psutil.Process(server.proc.pid).memory_info().rss / 1e9, 2)
    except Exception:  # psutil comes with ComfyUI's requirements; the figure is informative only
        rss = None
    REPORT["workflows"][OVI] = {
        "seconds": seconds, "make_models_seconds": make_seconds, "mp4": facts, "loader_report": report[0],
        "dit": dit, "core_models": core, "server_rss_gb_after": rss,
        "widgets": {"width": 64, "height": 64, "frames": 9, "steps": 2, "sampler": "uni_pc"},
        "substitution": "text encoder: a T5-base-shaped random file under the umT5 name (CLIPLoader type wan runs "
                        "it as ComfyUI's T5-base, 768 wide); the DiT's text_dim is 768 instead of umT5's 4096",
        "comfyui_log": [ln.split("m ", 1)[-1] for ln in log.splitlines()
                        if "Requested to load" in ln or "load device" in ln or "loaded completely" in ln][-12:],
    }


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "make-core-models":
    print(json.dumps(_make_core_models(*sys.argv[2:])))
