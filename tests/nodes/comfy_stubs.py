"""Minimal fakes of the ComfyUI modules the Harmony nodes import, for tests without ComfyUI.

``install()`` is idempotent. When a real ComfyUI is importable (its folder on ``sys.path``, e.g.
``PYTHONPATH=$COMFYUI_PATH``) it is used instead and nothing is faked (its ``args.cpu`` is set
first, as ComfyUI cannot import on a CPU-only box otherwise). The fakes mirror the behaviour the
pack relies on, checked against ComfyUI 0.26 (names and semantics from ``comfy_api/latest/_io.py``,
``comfy/samplers.py``, ``comfy/model_base.py``, ``comfy/utils.py``); they are test code only.
This file fakes the node API (``comfy_api.latest``), ``folder_paths`` and the small utility
modules; ``comfy_stubs_sampling.py`` fakes the model and sampling machinery.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import types
from dataclasses import dataclass, field
from typing import Any

import torch

STUB_FLAG = "__harmony_stub__"


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    setattr(mod, STUB_FLAG, True)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# ----------------------------------------------------------------------------------------------
# comfy_api.latest.io
# ----------------------------------------------------------------------------------------------
class _Input:
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: Any = None, advanced: bool | None = None, **extra: Any) -> None:
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.lazy, self.default, self.advanced = lazy, default, advanced
        for k in ("min", "max", "step", "round", "multiline", "control_after_generate", "options", "upload"):
            setattr(self, k, extra.pop(k, None))
        self.extra = extra

    def get_io_type(self) -> str:
        return self.io_type

    def as_dict(self) -> dict:
        d = _prune({"display_name": self.display_name, "tooltip": self.tooltip, "lazy": self.lazy,
                    "advanced": self.advanced, "default": self.default, "min": self.min, "max": self.max,
                    "step": self.step, "round": self.round, "multiline": self.multiline,
                    "control_after_generate": self.control_after_generate})
        if self.options is not None:
            d["multiselect"] = False
            d["options"] = list(self.options)
        return d


class _Output:
    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False, **_: Any) -> None:
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name or id, tooltip, is_output_list


def _comfytype(io_type: str) -> type:
    cls = type(io_type, (), {"io_type": io_type})
    cls.Input = type("Input", (_Input,), {"io_type": io_type})
    cls.Output = type("Output", (_Output,), {"io_type": io_type})
    return cls


class _MultiTypeInput(_Input):
    def __init__(self, id: str, types: list, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.types = types

    def get_io_type(self) -> str:
        return ",".join(dict.fromkeys(t.io_type for t in self.types))


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    search_aliases: list = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_dev_only: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    essentials_category: str | None = None

    def validate(self) -> None:
        for what, items in (("input", self.inputs), ("output", [o for o in self.outputs if o.id])):
            ids = [i.id for i in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"Ids must be unique between {what}s, but there are duplicates: {dupes}")

    def get_v1_info(self, cls: type) -> dict:
        inputs: dict[str, dict] = {"required": {}}
        for i in self.inputs:
            inputs.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), i.as_dict())
        if self.is_output_node:
            inputs["hidden"] = {"prompt": ("PROMPT",), "extra_pnginfo": ("EXTRA_PNGINFO",)}
        return {
            "input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
            "is_input_list": self.is_input_list, "output": [o.io_type for o in self.outputs],
            "output_is_list": [o.is_output_list for o in self.outputs],
            "output_name": [o.display_name or o.io_type for o in self.outputs],
            "output_tooltips": [o.tooltip for o in self.outputs], "name": self.node_id,
            "display_name": self.display_name, "description": self.description, "category": self.category,
            "output_node": self.is_output_node, "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
            "search_aliases": self.search_aliases or None,
        }


class NodeOutput:
    def __init__(self, *args: Any, ui: Any = None, expand: Any = None, block_execution: Any = None) -> None:
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self) -> tuple | None:
        return self.args if self.args else None


class ComfyNode:
    hidden = None

    @classmethod
    def define_schema(cls) -> Schema:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802 (ComfyUI's name)
        schema = cls.define_schema()
        schema.validate()
        return schema

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:  # noqa: N802
        return cls.GET_SCHEMA().get_v1_info(cls)


class ComfyExtension:
    async def on_load(self) -> None:
        return None

    async def get_node_list(self) -> list:  # pragma: no cover - overridden
        raise NotImplementedError


class PreviewText:
    def __init__(self, value: str, **_: Any) -> None:
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}


def _install_api() -> None:
    names = ["IMAGE", "MASK", "LATENT", "CONDITIONING", "MODEL", "VAE", "CLIP", "SAMPLER", "SIGMAS", "NOISE",
             "GUIDER", "AUDIO", "VIDEO", "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "*"]
    attr = {"IMAGE": "Image", "MASK": "Mask", "LATENT": "Latent", "CONDITIONING": "Conditioning", "MODEL": "Model",
            "VAE": "Vae", "CLIP": "Clip", "SAMPLER": "Sampler", "SIGMAS": "Sigmas", "NOISE": "Noise",
            "GUIDER": "Guider", "AUDIO": "Audio", "VIDEO": "Video", "INT": "Int", "FLOAT": "Float",
            "STRING": "String", "BOOLEAN": "Boolean", "COMBO": "Combo", "*": "AnyType"}
    io = types.SimpleNamespace(**{attr[n]: _comfytype(n) for n in names})
    io.Custom = _comfytype
    io.MultiType = types.SimpleNamespace(Input=_MultiTypeInput)
    io.Schema, io.NodeOutput, io.ComfyNode = Schema, NodeOutput, ComfyNode
    ui = types.SimpleNamespace(PreviewText=PreviewText)
    _module("comfy_api")
    _module("comfy_api.latest", io=io, IO=io, ui=ui, UI=ui, ComfyExtension=ComfyExtension)


# ----------------------------------------------------------------------------------------------
# folder_paths, comfy.utils, comfy.conds, comfy.nested_tensor, latent_preview, ...
# ----------------------------------------------------------------------------------------------
class NestedTensor:
    def __init__(self, tensors: Any) -> None:
        self.tensors, self.is_nested = list(tensors), True

    def _apply(self, other: Any, op: Any) -> NestedTensor:
        others = other.tensors if isinstance(other, NestedTensor) else [other] * len(self.tensors)
        return NestedTensor([op(t, o) for t, o in zip(self.tensors, others)])

    def __add__(self, b: Any) -> NestedTensor:
        return self._apply(b, lambda x, y: x + y)

    def __sub__(self, b: Any) -> NestedTensor:
        return self._apply(b, lambda x, y: x - y)

    def __mul__(self, b: Any) -> NestedTensor:
        return self._apply(b, lambda x, y: x * y)

    def unbind(self) -> list:
        return self.tensors

    def to(self, *args: Any, **kwargs: Any) -> NestedTensor:
        return NestedTensor([t.to(*args, **kwargs) for t in self.tensors])

    def float(self) -> NestedTensor:
        return self.to(dtype=torch.float32)

    @property
    def shape(self) -> torch.Size:
        return self.tensors[0].shape

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype


def pack_latents(latents: list) -> tuple[torch.Tensor, list]:
    shapes = [t.shape for t in latents]
    return torch.cat([t.reshape(t.shape[0], 1, -1) for t in latents], dim=-1), shapes


def unpack_latents(packed: torch.Tensor, shapes: list) -> list:
    if len(shapes) <= 1:
        return [packed]
    out = []
    for s in shapes:
        cut = math.prod(s[1:])
        out.append(packed[:, :, :cut].reshape([packed.shape[0]] + list(s)[1:]))
        packed = packed[:, :, cut:]
    return out


def repeat_to_batch_size(t: torch.Tensor, batch_size: int) -> torch.Tensor:
    if t.shape[0] > batch_size:
        return t[:batch_size]
    if t.shape[0] < batch_size:
        return t.repeat([math.ceil(batch_size / t.shape[0])] + [1] * (t.dim() - 1))[:batch_size]
    return t


class ProgressBar:
    calls = 0

    def __init__(self, total: int, node_id: Any = None) -> None:
        self.total = total

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        ProgressBar.calls += 1


class CONDRegular:
    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def _copy_with(self, cond: Any) -> CONDRegular:
        return self.__class__(cond)

    def process_cond(self, batch_size: int, **_: Any) -> CONDRegular:
        return self._copy_with(repeat_to_batch_size(self.cond, batch_size))

    def can_concat(self, other: Any) -> bool:
        return self.cond.shape == other.cond.shape and self.cond.device == other.cond.device

    def concat(self, others: list) -> torch.Tensor:
        return torch.cat([self.cond] + [o.cond for o in others])

    def size(self) -> list:
        return list(self.cond.size())


class CONDConstant(CONDRegular):
    def process_cond(self, batch_size: int, **_: Any) -> CONDConstant:
        return self._copy_with(self.cond)

    def can_concat(self, other: Any) -> bool:
        a, b = self.cond, other.cond
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(tuple(x) == tuple(y) for x, y in zip(a, b))
        return a == b

    def concat(self, others: list) -> Any:
        return self.cond

    def size(self) -> list:
        return [1]


def load_torch_file(path: str, safe_load: bool = False, device: Any = None, return_metadata: bool = False) -> Any:
    from safetensors.torch import load_file

    sd = load_file(path)
    if return_metadata:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return sd, f.metadata()
    return sd


def _install_small(models_dir: str) -> None:
    folders: dict[str, tuple[list[str], set[str]]] = {
        "diffusion_models": ([os.path.join(models_dir, "diffusion_models")], {".safetensors"}),
    }

    def get_filename_list(name: str) -> list[str]:
        paths, exts = folders.get(name, ([], set()))
        out = []
        for p in paths:
            if os.path.isdir(p):
                out += [f for f in os.listdir(p) if not exts or os.path.splitext(f)[1] in exts]
        return sorted(set(out))

    def get_full_path(name: str, filename: str) -> str | None:
        for p in folders.get(name, ([], set()))[0]:
            full = os.path.join(p, filename)
            if os.path.isfile(full):
                return full
        return None

    _module("folder_paths", models_dir=models_dir, folder_names_and_paths=folders,
            get_filename_list=get_filename_list, get_full_path=get_full_path,
            get_folder_paths=lambda name: list(folders.get(name, ([], set()))[0]),
            supported_pt_extensions={".safetensors", ".sft", ".ckpt", ".pt"})
    _module("comfy")
    _module("comfy.nested_tensor", NestedTensor=NestedTensor)
    _module("comfy.utils", pack_latents=pack_latents, unpack_latents=unpack_latents,
            repeat_to_batch_size=repeat_to_batch_size, ProgressBar=ProgressBar, PROGRESS_BAR_ENABLED=False,
            load_torch_file=load_torch_file,
            calculate_parameters=lambda sd, prefix="": sum(v.numel() for k, v in sd.items() if k.startswith(prefix)),
            weight_dtype=lambda sd, prefix="": next(iter(sd.values())).dtype if sd else None)
    _module("comfy.conds", CONDRegular=CONDRegular, CONDConstant=CONDConstant)

    class LatentFormat:
        scale_factor, latent_channels, latent_dimensions = 1.0, 4, 2
        latent_rgb_factors = latent_rgb_factors_bias = taesd_decoder_name = None

        def process_in(self, latent: Any) -> Any:
            return latent * self.scale_factor

        def process_out(self, latent: Any) -> Any:
            return latent / self.scale_factor

    _module("comfy.latent_formats", LatentFormat=LatentFormat)
    cpu = torch.device("cpu")
    _module("comfy.model_management", get_torch_device=lambda: cpu, unet_offload_device=lambda: cpu,
            intermediate_device=lambda: cpu, is_device_cpu=lambda d: torch.device(d).type == "cpu",
            unet_dtype=lambda model_params=0, supported_dtypes=(), weight_dtype=None: torch.float32,
            unet_manual_cast=lambda dtype, device, supported=(): None if dtype == torch.float32 else torch.float32)

    def prepare_callback(model: Any, steps: int, x0_output_dict: Any = None) -> Any:
        bar = ProgressBar(steps)
        return lambda step, x0, x, total: bar.update_absolute(step + 1, total)

    _module("latent_preview", prepare_callback=prepare_callback)


def install() -> bool:
    """Make the ComfyUI modules importable. Returns True when fakes were installed, False when a
    real ComfyUI is used."""
    existing = sys.modules.get("comfy_api.latest")
    if existing is not None:
        return bool(getattr(existing, STUB_FLAG, False))
    try:
        from comfy.cli_args import args  # a real ComfyUI on sys.path

        args.cpu = True
        import comfy_api.latest  # noqa: F401
        return False
    except ImportError:
        for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
            del sys.modules[name]
    models_dir = tempfile.mkdtemp(prefix="harmony_stub_models_")
    _install_api()
    _install_small(models_dir)
    import importlib.util  # the sampling fakes need the modules above; load them by path (tests/ is no package)

    spec = importlib.util.spec_from_file_location("harmony_comfy_stubs_sampling",
                                                  os.path.join(os.path.dirname(__file__), "comfy_stubs_sampling.py"))
    sampling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sampling)
    sampling.install(_module)
    return True


__all__ = ["install", "NestedTensor", "STUB_FLAG"]
