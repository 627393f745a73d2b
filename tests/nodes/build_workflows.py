"""Build the example workflows (``workflows/*.json``, ComfyUI UI format 0.4) and the trimmed core-node
fixture the workflow tests check them against. A developer tool, not a test:

    python tests/nodes/build_workflows.py [path/to/object_info.json]
    python tests/nodes/build_workflows.py --thumbnails-from DIR   # DIR: MP4s kept by HARMONY_IT_KEEP

Widget order, socket slots and link types come from the node definitions themselves (ours from the
pack's schemas, core ones from ``/object_info`` of ComfyUI 0.26), so the files stay consistent with
the nodes. With an object_info path the fixture ``fixtures/core_nodes_v0.26.json`` is regenerated
too (only the core nodes the workflows use, plus the list of every core node id).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKFLOWS = ROOT / "workflows"
FIXTURE = HERE / "fixtures" / "core_nodes_v0.26.json"
CORE_USED = ["RandomNoise", "KSamplerSelect", "BasicScheduler", "SamplerCustomAdvanced", "CreateVideo", "SaveVideo",
             "LoadAudio", "LoadVideo", "GetVideoComponents", "CLIPLoader", "VAELoader"]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
PACK_ID = "comfyui-harmony"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=[str(path.parent)]
                                                  if path.name == "__init__.py" else None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def harmony_infos() -> dict[str, dict]:
    """``/object_info``-style definitions of the pack's nodes (through the test fakes)."""
    sys.path.insert(0, str(ROOT))
    _load("harmony_comfy_stubs", HERE / "comfy_stubs.py").install()
    pack = _load("harmony_pack_build", ROOT / "__init__.py")
    ext = asyncio.run(pack.comfy_entrypoint())
    return {c.GET_SCHEMA().node_id: c.GET_NODE_INFO_V1() for c in asyncio.run(ext.get_node_list())}


def _kind_opts(spec: list) -> tuple:
    """``(type, options)`` of an input spec (``/object_info`` omits the options dict when empty)."""
    return spec[0], (spec[1] if len(spec) > 1 else {})


def widget_names(info: dict) -> list[tuple[str, int]]:
    """Widget inputs in ``widgets_values`` order, with how many extra UI values follow each."""
    out = []
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            kind, opts = _kind_opts(info["input"][section][name])
            if isinstance(kind, list):
                kind = "COMBO"
            if kind not in WIDGET_TYPES or opts.get("forceInput"):
                continue
            extra = 0
            if kind in ("INT", "FLOAT") and (opts.get("control_after_generate") or
                                             (kind == "INT" and name in ("seed", "noise_seed")
                                              and "control_after_generate" not in opts)):
                extra = 1
            if kind == "COMBO" and opts.get("audio_upload"):
                extra = 2
            if kind == "COMBO" and (opts.get("video_upload") or opts.get("image_upload")):
                extra = 1
            out.append((name, extra))
    return out


def sockets(info: dict) -> list[tuple[str, str, bool]]:
    """Link-only inputs ``(name, type, optional)`` in definition order."""
    out = []
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            kind, opts = _kind_opts(info["input"][section][name])
            if isinstance(kind, list) or (kind in WIDGET_TYPES and not opts.get("forceInput")):
                continue
            out.append((name, kind, section == "optional"))
    return out


class Graph:
    """A UI-format workflow under construction."""

    def __init__(self, infos: dict[str, dict]) -> None:
        self.infos, self.nodes, self.links = infos, [], []

    def node(self, type_: str, pos: tuple[int, int], size: tuple[int, int] = (300, 120), title: str | None = None,
             **widgets) -> dict:
        info = self.infos[type_]
        values, optional_tail = [], 0
        for name, extra in widget_names(info):
            section = "required" if name in info["input"]["required"] else "optional"
            default = _kind_opts(info["input"][section][name])[1].get("default")
            value = widgets.pop(name, default)
            values.append(value)
            if extra == 1:
                values.append("image" if type_ == "LoadVideo" else "fixed")
            elif extra == 2:
                values += [None, None]
            # Trailing optional widgets left at their default are omitted (the frontend fills in
            # defaults), so the file also loads in ComfyUI versions that lack them (CreateVideo's
            # bit_depth is newer than 0.8).
            optional_tail = optional_tail + 1 + extra if section == "optional" and value == default else 0
        values = values[:len(values) - optional_tail]
        if widgets:
            raise KeyError(f"{type_} has no widgets {sorted(widgets)}")
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0,
            "inputs": [dict({"name": n, "type": t, "link": None}, **({"shape": 7} if opt else {}))
                       for n, t, opt in sockets(info)],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
            "properties": {"Node name for S&R": type_,
                           "cnr_id": PACK_ID if type_.startswith("Harmony") else "comfy-core"},
            "widgets_values": values,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, text: str, pos: tuple[int, int], size: tuple[int, int] = (380, 200), title: str = "Read me") -> None:
        self.nodes.append({"id": len(self.nodes) + 1, "type": "MarkdownNote", "pos": list(pos), "size": list(size),
                           "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
                           "title": title, "properties": {}, "widgets_values": [text], "color": "#432",
                           "bgcolor": "#653"})

    def link(self, src: dict, output: str, dst: dict, input_: str) -> None:
        slot = next(i for i, o in enumerate(src["outputs"]) if o["name"] == output)
        out_type = src["outputs"][slot]["type"]
        entry = next((i for i in dst["inputs"] if i["name"] == input_), None)
        if entry is None:  # a widget converted to an input
            info = self.infos[dst["type"]]
            section = "required" if input_ in info["input"]["required"] else "optional"
            kind = info["input"][section][input_][0]
            entry = {"name": input_, "type": "COMBO" if isinstance(kind, list) else kind, "widget": {"name": input_},
                     "link": None}
            dst["inputs"].append(entry)
        link_id = len(self.links) + 1
        entry["link"] = link_id
        src["outputs"][slot]["links"].append(link_id)
        self.links.append([link_id, src["id"], slot, dst["id"], dst["inputs"].index(entry), out_type])

    def save(self, name: str) -> Path:
        for n in self.nodes:
            for o in n["outputs"]:
                o["links"] = o["links"] or None
        data = {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [40, 60]}}, "version": 0.4}
        path = WORKFLOWS / f"{name}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path


# ------------------------------------------------------------------------------------------------
# The four example workflows
# ------------------------------------------------------------------------------------------------
BALL = "a medium-sized yellow ball bounces in place in a dark green room, with knocks at every bounce"
DRUM = "fast low-pitched drumming: a stick strikes a red drum on a dark purple background"
# The shipped model keeps flashes and drum strikes in sync with their sound (README eval table); the
# text-to-AV examples use such scenes. Sampler settings are the ones that table was measured with.
FLASH = "a square red lamp flashes four times, each flash with a long low-pitched buzzy beep, navy background"
SAMPLE = dict(seed=0, steps=25, sampler_name="uni_pc", scheduler="simple")
INPUTS_NOTE = ("\n\n**Inputs:** copy the files in this pack's `workflows/inputs/` folder into `ComfyUI/input/` "
               "(or drop them onto the Load node) before queueing.")


def _base(g: Graph) -> dict:
    return g.node("HarmonyModelLoader", (0, 0), (320, 170), model_name="harmony-tiny.safetensors")


def _vaes(g: Graph, loader: dict, *targets: dict) -> None:
    for t in targets:
        g.link(loader, "video_vae", t, "video_vae") if any(i["name"] == "video_vae" for i in t["inputs"]) else None
        g.link(loader, "audio_vae", t, "audio_vae") if any(i["name"] == "audio_vae" for i in t["inputs"]) else None


def _custom_sampler(g: Graph, loader: dict, positive: dict, latent: dict, x: int) -> dict:
    guider = g.node("HarmonySyncCFGGuider", (x, 0), (320, 200))
    noise = g.node("RandomNoise", (x, 260), (320, 90), noise_seed=0)
    sampler = g.node("KSamplerSelect", (x, 390), (320, 60), sampler_name="uni_pc")
    sched = g.node("BasicScheduler", (x, 490), (320, 110), scheduler="simple", steps=25)
    sca = g.node("SamplerCustomAdvanced", (x + 380, 0), (280, 110))
    g.link(loader, "MODEL", guider, "model")
    g.link(loader, "MODEL", sched, "model")
    g.link(positive, "CONDITIONING", guider, "positive")
    _vaes(g, loader, guider)
    for src, out, inp in ((noise, "NOISE", "noise"), (guider, "GUIDER", "guider"), (sampler, "SAMPLER", "sampler"),
                          (sched, "SIGMAS", "sigmas"), (latent, "LATENT", "latent_image")):
        g.link(src, out, sca, inp)
    return sca


def _finish(g: Graph, images: tuple, audio: tuple, fps: tuple | None, x: int, y: int, prefix: str,
            score: bool = True) -> None:
    create = g.node("CreateVideo", (x, y), (270, 100), fps=24.0)
    save = g.node("SaveVideo", (x + 320, y), (300, 380), filename_prefix=f"video/{prefix}")
    g.link(*images, create, "images")
    g.link(*audio, create, "audio")
    if fps is not None:
        g.link(*fps, create, "fps")
    g.link(create, "VIDEO", save, "video")
    if score:
        s = g.node("HarmonySyncScore", (x, y + 160), (300, 160))
        g.link(*images, s, "images")
        g.link(*audio, s, "audio")
        if fps is not None:
            g.link(*fps, s, "fps")


def t2av(infos: dict) -> Path:
    g = Graph(infos)
    g.note("## Harmony: text -> video with sound\nOne prompt, one pass: Harmony draws the picture and the "
           "soundtrack together. SyncCFG (video 3, audio 2) guides each stream against a clean silent / still "
           "anchor, which sharpens what ties them together. Runs on a CPU with the shipped tiny model; sizes, "
           "length and steps are set for a quick demo.", (0, -260), (700, 200))
    loader = _base(g)
    text = g.node("HarmonyTextEncode", (380, 0), (360, 260), video_prompt=FLASH)
    empty = g.node("HarmonyEmptyAVLatent", (380, 320), (360, 250))
    g.link(loader, "text_encoders", text, "text_encoders")
    _vaes(g, loader, empty)
    sca = _custom_sampler(g, loader, text, empty, 800)
    dec_v = g.node("HarmonyVAEDecodeVideo", (1560, 0), (280, 80))
    dec_a = g.node("HarmonyVAEDecodeAudio", (1560, 140), (280, 80))
    for d in (dec_v, dec_a):
        g.link(sca, "output", d, "samples")
    _vaes(g, loader, dec_v, dec_a)
    _finish(g, (dec_v, "images"), (dec_a, "audio"), (dec_v, "fps"), 1900, 0, "harmony_t2av")
    return g.save("harmony_t2av")


def a2v(infos: dict) -> Path:
    g = Graph(infos)
    g.note("## Harmony: audio -> video\nThe sound is held clean at audio timestep 0 while the video is drawn to "
           "match it (Harmony Audio To Video). The sound is fitted to the clip (resampled to 16 kHz, trimmed or "
           "padded to `seconds`) and the fitted sound goes into the MP4. Uses the one-node Harmony Sampler."
           + INPUTS_NOTE, (0, -260), (700, 220))
    loader = _base(g)
    load = g.node("LoadAudio", (0, 360), (320, 140), audio="harmony_example_audio.wav")
    text = g.node("HarmonyTextEncode", (380, 0), (360, 260), video_prompt=DRUM)
    empty = g.node("HarmonyEmptyAVLatent", (380, 320), (360, 250))
    enc = g.node("HarmonyVAEEncodeAudio", (800, 320), (300, 100))
    mode = g.node("HarmonyAudioToVideo", (800, 480), (300, 80))
    sampler = g.node("HarmonySampler", (1160, 0), (320, 330), **SAMPLE)
    dec_v = g.node("HarmonyVAEDecodeVideo", (1540, 0), (280, 80))
    g.link(loader, "text_encoders", text, "text_encoders")
    g.link(load, "AUDIO", enc, "audio")
    g.link(empty, "LATENT", enc, "match_latent")
    g.link(empty, "LATENT", mode, "av_latent")
    g.link(enc, "audio_latent", mode, "audio_latent")
    g.link(loader, "MODEL", sampler, "model")
    g.link(text, "CONDITIONING", sampler, "positive")
    g.link(mode, "LATENT", sampler, "latent")
    g.link(sampler, "LATENT", dec_v, "samples")
    _vaes(g, loader, empty, enc, sampler, dec_v)
    _finish(g, (dec_v, "images"), (enc, "audio"), (dec_v, "fps"), 1880, 0, "harmony_a2v")
    return g.save("harmony_a2v")


def v2a(infos: dict) -> Path:
    g = Graph(infos)
    g.note("## Harmony: video -> sound\nThe video is held clean at video timestep 0 while the soundtrack is drawn "
           "to match it (Harmony Video To Audio). The frames are fitted to the clip (24 fps, the latent's size, "
           "`seconds` long); the fitted frames go into the MP4 with the new sound." + INPUTS_NOTE,
           (0, -260), (700, 220))
    loader = _base(g)
    load = g.node("LoadVideo", (0, 360), (320, 300), file="harmony_example_video.mp4")
    parts = g.node("GetVideoComponents", (0, 700), (320, 100))
    text = g.node("HarmonyTextEncode", (380, 0), (360, 260), video_prompt=BALL)
    empty = g.node("HarmonyEmptyAVLatent", (380, 320), (360, 250))
    enc = g.node("HarmonyVAEEncodeVideo", (380, 620), (360, 130))
    mode = g.node("HarmonyVideoToAudio", (380, 800), (360, 80))
    g.link(load, "VIDEO", parts, "video")
    g.link(loader, "text_encoders", text, "text_encoders")
    g.link(parts, "images", enc, "images")
    g.link(parts, "fps", enc, "fps")
    g.link(empty, "LATENT", enc, "match_latent")
    g.link(empty, "LATENT", mode, "av_latent")
    g.link(enc, "video_latent", mode, "video_latent")
    _vaes(g, loader, empty, enc)
    sca = _custom_sampler(g, loader, text, mode, 800)
    dec_a = g.node("HarmonyVAEDecodeAudio", (1560, 0), (280, 80))
    g.link(sca, "output", dec_a, "samples")
    _vaes(g, loader, dec_a)
    _finish(g, (enc, "images"), (dec_a, "audio"), None, 1900, 0, "harmony_v2a")
    return g.save("harmony_v2a")


def chain(infos: dict) -> Path:
    g = Graph(infos)
    g.note("## Harmony: generate, then re-voice\nA clip is generated from text, then its video is kept and its "
           "sound redrawn from a new audio caption (Harmony Video To Audio on the sampler's output: the mode node "
           "replaces the old noise mask). Swap in Harmony Audio To Video to re-animate a clip to its own sound "
           "instead. Both versions are saved.", (0, -260), (700, 200))
    loader = _base(g)
    text = g.node("HarmonyTextEncode", (380, 0), (360, 260), title="Harmony Text Encode (original)",
                  video_prompt=FLASH)
    text2 = g.node("HarmonyTextEncode", (380, 620), (360, 260), title="Harmony Text Encode (new sound)",
                   video_prompt=FLASH, audio_caption="a short high-pitched pure beep at every flash")
    empty = g.node("HarmonyEmptyAVLatent", (380, 320), (360, 250))
    first = g.node("HarmonySampler", (800, 0), (320, 330), title="Harmony Sampler (text to AV)", **SAMPLE)
    mode = g.node("HarmonyVideoToAudio", (800, 400), (320, 80))
    second = g.node("HarmonySampler", (800, 540), (320, 330), title="Harmony Sampler (re-voice)",
                    **dict(SAMPLE, seed=1))
    dec_v = g.node("HarmonyVAEDecodeVideo", (1180, 0), (280, 80))
    dec_a = g.node("HarmonyVAEDecodeAudio", (1180, 140), (280, 80))
    dec_a2 = g.node("HarmonyVAEDecodeAudio", (1180, 540), (280, 80), title="Harmony VAE Decode Audio (new)")
    g.link(loader, "text_encoders", text, "text_encoders")
    g.link(loader, "text_encoders", text2, "text_encoders")
    for s, cond, lat in ((first, text, empty), (second, text2, mode)):
        g.link(loader, "MODEL", s, "model")
        g.link(cond, "CONDITIONING", s, "positive")
        g.link(lat, "LATENT", s, "latent")
    g.link(first, "LATENT", mode, "av_latent")
    g.link(first, "LATENT", dec_v, "samples")
    g.link(first, "LATENT", dec_a, "samples")
    g.link(second, "LATENT", dec_a2, "samples")
    _vaes(g, loader, empty, first, second, dec_v, dec_a, dec_a2)
    _finish(g, (dec_v, "images"), (dec_a, "audio"), (dec_v, "fps"), 1520, 0, "harmony_chain_original", score=False)
    _finish(g, (dec_v, "images"), (dec_a2, "audio"), (dec_v, "fps"), 1520, 540, "harmony_chain_revoiced")
    return g.save("harmony_chain")


# The Ovi workflow: the files a user downloads (names, folders, sources: README "Ovi checkpoints").
OVI_FILES = {
    "dit": ("model.safetensors", "diffusion_models", "https://huggingface.co/chetwinlow1/Ovi/resolve/main/model.safetensors"),
    "umt5": ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders",
             "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
             "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "video_vae": ("wan2.2_vae.safetensors", "vae",
                  "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/"
                  "wan2.2_vae.safetensors"),
    # No single-file MMAudio VAE for core Load VAE is published: the README shows how to make this one
    # from MMAudio's v1-16.pth and best_netG.pt, so it carries no download link.
    "audio_vae": ("mmaudio_16k_vae_bigvgan.safetensors", "vae", None),
}
OVI_PROMPT = ("A drummer sits at a red drum kit in a small rehearsal room lit by one warm lamp. She plays a quick, "
              "steady beat on the snare, then stops, looks at the camera and says <S>One more time, from the top."
              "<E> <AUDCAP>Sharp snare hits in a small room, then a calm female voice.<ENDAUDCAP>")


def _with_model(node: dict, key: str) -> dict:
    """Record the file a loader expects in the node's properties (the frontend offers the download)."""
    name, folder, url = OVI_FILES[key]
    if url:
        node["properties"]["models"] = [{"name": name, "url": url, "directory": folder}]
    return node


def ovi_t2av(infos: dict) -> Path:
    g = Graph(infos)
    g.note("## Harmony: an Ovi checkpoint, text -> video with sound\n"
           "Full-size weights, core loaders: put the files into ComfyUI/models/ as the README says (Ovi's "
           "`model.safetensors` in `diffusion_models/`, umT5 in `text_encoders/`, the Wan2.2 and MMAudio VAEs in "
           "`vae/`). The loader reads the architecture from the file's keys and reports what it loaded in the "
           "console. Ovi's own format: the words spoken go between `<S>` and `<E>`, the sound description between "
           "`<AUDCAP>` and `<ENDAUDCAP>`, in one prompt that both streams read (leave audio_caption empty). "
           "704x704, 121 frames at 24 fps (5 s) is the size Ovi's 720x720 model makes for a square clip. "
           "The DiT's weights take 23.3 GB in bf16 and 11.7 GB in fp8_e4m3fn (ComfyUI keeps what does not fit in "
           "VRAM in RAM); 'default' is float32 on a CPU (46.6 GB). SyncCFG (video 3, audio 2) runs three passes "
           "per step.",
           (0, -300), (760, 260))
    loader = _with_model(g.node("HarmonyModelLoader", (0, 0), (320, 170), model_name=OVI_FILES["dit"][0]), "dit")
    clip = _with_model(g.node("CLIPLoader", (0, 220), (320, 110), title="Load CLIP (umT5-XXL)",
                              clip_name=OVI_FILES["umt5"][0], type="wan"), "umt5")
    vvae = _with_model(g.node("VAELoader", (0, 380), (320, 60), title="Load VAE (Wan2.2 video)",
                              vae_name=OVI_FILES["video_vae"][0]), "video_vae")
    avae = _with_model(g.node("VAELoader", (0, 490), (320, 60), title="Load VAE (MMAudio 16 kHz audio)",
                              vae_name=OVI_FILES["audio_vae"][0]), "audio_vae")
    text = g.node("HarmonyTextEncode", (380, 0), (380, 300), video_prompt=OVI_PROMPT)
    empty = g.node("HarmonyEmptyAVLatent", (380, 360), (380, 250), width=704, height=704, frames=121, fps=24.0)
    g.link(clip, "CLIP", text, "clip")
    g.link(vvae, "VAE", empty, "video_vae")
    g.link(avae, "VAE", empty, "audio_vae")
    guider = g.node("HarmonySyncCFGGuider", (820, 0), (320, 200), video_scale=3.0, audio_scale=2.0)
    noise = g.node("RandomNoise", (820, 260), (320, 90), noise_seed=0)
    sampler = g.node("KSamplerSelect", (820, 390), (320, 60), sampler_name="uni_pc")
    sched = g.node("BasicScheduler", (820, 490), (320, 110), scheduler="simple", steps=50)
    sca = g.node("SamplerCustomAdvanced", (1200, 0), (280, 110))
    g.link(loader, "MODEL", guider, "model")
    g.link(loader, "MODEL", sched, "model")
    g.link(text, "CONDITIONING", guider, "positive")
    g.link(vvae, "VAE", guider, "video_vae")
    g.link(avae, "VAE", guider, "audio_vae")
    for src, out, inp in ((noise, "NOISE", "noise"), (guider, "GUIDER", "guider"), (sampler, "SAMPLER", "sampler"),
                          (sched, "SIGMAS", "sigmas"), (empty, "LATENT", "latent_image")):
        g.link(src, out, sca, inp)
    dec_v = g.node("HarmonyVAEDecodeVideo", (1540, 0), (280, 80))
    dec_a = g.node("HarmonyVAEDecodeAudio", (1540, 140), (280, 80))
    for d in (dec_v, dec_a):
        g.link(sca, "output", d, "samples")
    g.link(vvae, "VAE", dec_v, "video_vae")
    g.link(avae, "VAE", dec_a, "audio_vae")
    _finish(g, (dec_v, "images"), (dec_a, "audio"), (dec_v, "fps"), 1880, 0, "harmony_ovi_t2av", score=False)
    return g.save("harmony_ovi_t2av")


def write_fixture(object_info_path: Path) -> None:
    full = json.loads(object_info_path.read_text())
    data = {"source": "GET /object_info of ComfyUI 0.26.0 (7cb784e0), trimmed to the nodes the workflows use",
            "all_node_ids": sorted(full), "nodes": {k: full[k] for k in CORE_USED}}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------------
# Example inputs (synthetic clips, written with PyAV) and thumbnails
# ------------------------------------------------------------------------------------------------
def write_inputs() -> None:
    """``workflows/inputs/harmony_example_audio.wav`` (2 s of drumming, 16 kHz mono) and
    ``harmony_example_video.mp4`` (2 s of a bouncing ball with its knocks, 64x64, 24 fps, H.264 + AAC)."""
    import av
    import numpy as np
    import torch

    from harmony_core.data.synthetic import generate_clip

    out = WORKFLOWS / "inputs"
    out.mkdir(exist_ok=True)
    drum = generate_clip(11, family="drum", seconds=2.0)
    pcm = (drum.waveform.clamp(-1, 1).numpy() * 32767).astype(np.int16)[None]
    with av.open(str(out / "harmony_example_audio.wav"), "w", format="wav") as c:
        stream = c.add_stream("pcm_s16le", rate=drum.sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = drum.sample_rate
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    ball = generate_clip(7, family="ball", seconds=2.0)
    with av.open(str(out / "harmony_example_video.mp4"), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        a = c.add_stream("aac", rate=ball.sample_rate, layout="mono")
        for img in (ball.frames.clamp(0, 1) * 255).to(torch.uint8).numpy():
            for packet in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in v.encode(None):
            c.mux(packet)
        wav = ball.waveform.numpy().astype(np.float32)[None]
        for start in range(0, wav.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = ball.sample_rate, start
            for packet in a.encode(frame):
                c.mux(packet)
        for packet in a.encode(None):
            c.mux(packet)


def _thumbnail(name: str, title: str, subtitle: str, frames: list, wave, scale) -> None:
    """Write ``workflows/<name>.jpg`` (480x270): four ``[H, W, 3]`` frames in 0..1, the waveform ``[S]``
    envelope under them (amplitude times ``scale(peak)``, clipped to the band), title and subtitle."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (480, 270), (24, 26, 33))
    draw = ImageDraw.Draw(img)
    for k, frame in enumerate(frames):
        pixels = (frame.clamp(0, 1).numpy() * 255).astype(np.uint8)
        img.paste(Image.fromarray(pixels).resize((108, 108), Image.NEAREST), (12 + k * 117, 56))
    if wave is not None:
        amp = wave.abs().numpy()
        gain = scale(float(amp.max()))
        for x, seg in enumerate(np.array_split(amp, 456)):
            h = int(min(1.0, float(seg.max()) * gain) * 40)
            draw.line([(12 + x, 215 - h), (12 + x, 215 + h)], fill=(120, 200, 160))
    draw.text((12, 14), f"Harmony: {title}", fill=(235, 235, 235))
    draw.text((12, 34), subtitle, fill=(150, 150, 160))
    img.save(WORKFLOWS / f"{name}.jpg", quality=88)


def write_thumbnails() -> None:
    """A 480x270 JPEG per workflow that has none yet: a frame strip of a synthetic clip of the
    workflow's kind, its waveform, and the workflow's title (a placeholder until
    ``--thumbnails-from`` replaces it with a real run's output)."""
    from harmony_core.data.synthetic import generate_clip

    kinds = {"harmony_t2av": ("ball", "text -> video + sound"), "harmony_a2v": ("drum", "audio -> video"),
             "harmony_v2a": ("ball", "video -> sound"), "harmony_chain": ("flash", "generate, then re-voice")}
    for name, (family, title) in kinds.items():
        if (WORKFLOWS / f"{name}.jpg").is_file():
            continue  # keep thumbnails made from real runs (--thumbnails-from)
        clip = generate_clip(3, family=family, seconds=2.0)
        _thumbnail(name, title, "ComfyUI-Harmony example workflow", [clip.frames[i] for i in (4, 16, 28, 40)],
                   clip.waveform, scale=lambda peak: 1.2)


def write_thumbnails_from_runs(folder: Path) -> list[str]:
    """Thumbnails from real runs: for every ``<workflow>.mp4`` in ``folder`` (what the integration
    tier keeps with ``HARMONY_IT_KEEP``), a 480x270 JPEG with four frames of the generated video, its
    soundtrack's envelope on the same time axis, and the workflow's title."""
    import numpy as np

    from harmony_core.io.media import read_video

    titles = {"harmony_t2av": "text -> video + sound", "harmony_a2v": "audio -> video",
              "harmony_v2a": "video -> sound", "harmony_chain": "generate, then re-voice"}
    written = []
    for name, title in titles.items():
        path = folder / f"{name}.mp4"
        if not path.is_file():
            continue
        frames, fps, audio = read_video(path)
        picks = np.linspace(0, frames.shape[0] - 1, 4).round().astype(int)
        wave = None if audio is None else audio[0].mean(0)[: int(frames.shape[0] / fps * audio[1])]
        _thumbnail(name, title, "generated by this workflow with the shipped model (frames, sound)",
                   [frames[i] for i in picks], wave, scale=lambda peak: 1.0 / max(peak, 1e-6))
        written.append(name)
    return written


_SHORT = {"HarmonyModelLoader": "Model Loader", "Load CLIP (umT5-XXL)": "umT5", "Load VAE (Wan2.2 video)": "Wan2.2 VAE",
          "Load VAE (MMAudio 16 kHz audio)": "MMAudio VAE", "HarmonyTextEncode": "Text Encode",
          "HarmonyEmptyAVLatent": "Empty AV", "HarmonySyncCFGGuider": "SyncCFG", "SamplerCustomAdvanced": "Sampler",
          "HarmonyVAEDecodeVideo": "Decode video", "HarmonyVAEDecodeAudio": "Decode audio", "RandomNoise": "Noise",
          "KSamplerSelect": "uni_pc", "BasicScheduler": "Scheduler", "CreateVideo": "Create", "SaveVideo": "Save MP4"}


def write_graph_thumbnail(name: str, title: str, footer: tuple[str, ...] = ()) -> None:
    """A 480x270 JPEG drawing the workflow's graph (boxes at the nodes' positions, one line per link),
    for workflows whose output needs weights the repository does not ship."""
    from PIL import Image, ImageDraw

    wf = json.loads((WORKFLOWS / f"{name}.json").read_text())
    nodes = {n["id"]: n for n in wf["nodes"] if n["type"] != "MarkdownNote"}
    x0 = min(n["pos"][0] for n in nodes.values())
    y0 = min(n["pos"][1] for n in nodes.values())
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    scale = min(456 / (x1 - x0), 200 / (y1 - y0))

    def box(n: dict) -> tuple[float, float, float, float]:
        x, y = 12 + (n["pos"][0] - x0) * scale, 56 + (n["pos"][1] - y0) * scale
        return x, y, x + n["size"][0] * scale, y + min(n["size"][1], 120) * scale

    img = Image.new("RGB", (480, 270), (24, 26, 33))
    draw = ImageDraw.Draw(img)
    for _, src, _, dst, _, _ in wf["links"]:
        a, b = box(nodes[src]), box(nodes[dst])
        draw.line([(a[2], (a[1] + a[3]) / 2), (b[0], (b[1] + b[3]) / 2)], fill=(110, 150, 200), width=1)
    for n in nodes.values():
        x, y, xe, ye = box(n)
        core = not n["type"].startswith("Harmony")
        draw.rectangle([x, y, xe, ye], fill=(52, 56, 66) if core else (46, 84, 70), outline=(150, 150, 160))
        label = _SHORT.get(n.get("title", n["type"]), n.get("title", n["type"]).replace("Harmony", ""))
        draw.text((x + 2, y + 1), label[: max(3, int((xe - x) / 5.5))], fill=(230, 230, 230))
    draw.text((12, 14), f"Harmony: {title}", fill=(235, 235, 235))
    draw.text((12, 34), "workflow graph (green: Harmony nodes, grey: core nodes)", fill=(150, 150, 160))
    for i, line in enumerate(footer):
        draw.text((12, 226 + 16 * i), line, fill=(170, 170, 180))
    img.save(WORKFLOWS / f"{name}.jpg", quality=88)


def main(argv: list[str]) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if len(argv) > 2 and argv[1] == "--thumbnails-from":
        print("thumbnails from runs:", write_thumbnails_from_runs(Path(argv[2])))
        return
    if len(argv) > 1:
        write_fixture(Path(argv[1]))
    write_inputs()
    write_thumbnails()
    infos = dict(json.loads(FIXTURE.read_text())["nodes"])
    infos.update(harmony_infos())
    for build in (t2av, a2v, v2a, chain, ovi_t2av):
        print("wrote", build(infos))
    write_graph_thumbnail("harmony_ovi_t2av", "Ovi checkpoint: text -> video + sound",
                          ("files: Ovi model.safetensors, umT5-XXL, Wan2.2 VAE, MMAudio 16 kHz VAE (see README)",
                           "704x704, 121 frames at 24 fps, SyncCFG 3 / 2, uni_pc 50 steps"))


if __name__ == "__main__":
    main(sys.argv)
