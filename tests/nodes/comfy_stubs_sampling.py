"""Fakes of ComfyUI's model and sampling machinery (see ``comfy_stubs.py``): ``comfy.model_base``,
``comfy.supported_models_base``, ``comfy.ops``, ``comfy.model_patcher``, ``comfy.samplers``,
``comfy.sample`` and ``comfy.ldm.modules.attention``.

Behaviour kept from ComfyUI 0.26: ``CFGGuider.sample`` packs nested latents and masks, conds go
through ``extra_conds`` once per run, ``calc_cond_batch`` batches every concatenable cond into one
``apply_model`` call (recorded in ``CALLS`` for tests), ``_apply_model`` calls
``process_timestep`` and unpacks ``latent_shapes``, ``KSamplerX0Inpaint`` blends kept latents, the
flow ``CONST`` maths, the ``simple`` scheduler and Euler. ``uni_pc`` is a fake that, like the real
one, overwrites the last sigma of the tensor it is given (so tests can check we clone sigmas).
"""

from __future__ import annotations

import enum
import math
import sys
import types
import uuid
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CALLS: list[dict[str, Any]] = []  # one entry per apply_model call made by calc_cond_batch


def _time_snr_shift(alpha: float, t: torch.Tensor) -> torch.Tensor:
    return t if alpha == 1.0 else alpha * t / (1 + (alpha - 1) * t)


def _reshape_sigma(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    return sigma.reshape(sigma.shape[:1] + (1,) * (ndim - 1)) if sigma.numel() > 1 else sigma


class ModelSamplingFlow(nn.Module):
    """``ModelSamplingDiscreteFlow`` + ``CONST``."""

    def __init__(self, model_config: Any = None) -> None:
        super().__init__()
        settings = model_config.sampling_settings if model_config is not None else {}
        self.shift, self.multiplier = settings.get("shift", 1.0), settings.get("multiplier", 1000)
        self.register_buffer("sigmas", self.sigma(torch.arange(1, 1001) / 1000 * self.multiplier))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return _time_snr_shift(self.shift, t / self.multiplier)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.multiplier

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(_time_snr_shift(self.shift, torch.tensor(1.0 - percent)))

    def calculate_input(self, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def calculate_denoised(self, sigma: torch.Tensor, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x - out * _reshape_sigma(sigma, out.ndim)

    def noise_scaling(self, sigma: Any, noise: Any, latent: Any, max_denoise: bool = False) -> Any:
        sigma = _reshape_sigma(torch.as_tensor(sigma), noise.ndim)
        return sigma * noise + (1.0 - sigma) * latent

    def inverse_noise_scaling(self, sigma: Any, latent: torch.Tensor) -> torch.Tensor:
        return latent / (1.0 - _reshape_sigma(torch.as_tensor(sigma), latent.ndim))


class ModelType(enum.Enum):
    EPS = 1
    FLOW = 8


def _no_init(cls: type) -> type:
    """The layer without weight initialisation (``comfy.ops.disable_weight_init``): weights are loaded."""
    return type(cls.__name__, (cls,), {"reset_parameters": lambda self: None})


def _ops() -> types.SimpleNamespace:
    return types.SimpleNamespace(**{c.__name__: _no_init(c) for c in (nn.Linear, nn.Conv1d, nn.Conv3d, nn.LayerNorm,
                                                                      nn.RMSNorm, nn.Embedding)})


def _cast(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.to(like.dtype if like.is_floating_point() else torch.float32)


class _CastLinear(_no_init(nn.Linear)):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _cast(self.weight, x), _cast(self.bias, x))


class _CastConv1d(_no_init(nn.Conv1d)):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _cast(self.weight, x), _cast(self.bias, x))


class _CastConv3d(_no_init(nn.Conv3d)):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _cast(self.weight, x), _cast(self.bias, x))


class _CastLayerNorm(_no_init(nn.LayerNorm)):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, _cast(self.weight, x), _cast(self.bias, x), self.eps)


class _CastRMSNorm(_no_init(nn.RMSNorm)):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, _cast(self.weight, x), self.eps)


def _cast_ops() -> types.SimpleNamespace:
    """Like ``comfy.ops.manual_cast``: weights stay in their storage dtype and are cast per call."""
    return types.SimpleNamespace(Linear=_CastLinear, Conv1d=_CastConv1d, Conv3d=_CastConv3d, LayerNorm=_CastLayerNorm,
                                 RMSNorm=_CastRMSNorm, Embedding=_no_init(nn.Embedding))


def pick_operations(weight_dtype: Any = None, compute_dtype: Any = None, **_: Any) -> types.SimpleNamespace:
    return _ops() if compute_dtype is None or compute_dtype == weight_dtype else _cast_ops()


class BaseModel(nn.Module):
    def __init__(self, model_config: Any, model_type: ModelType = ModelType.EPS, device: Any = None,
                 unet_model: Any = None) -> None:
        super().__init__()
        self.latent_format, self.model_config = model_config.latent_format, model_config
        self.manual_cast_dtype, self.device, self.current_patcher = model_config.manual_cast_dtype, device, None
        ops = model_config.custom_operations or pick_operations(model_config.unet_config.get("dtype"),
                                                                 self.manual_cast_dtype)
        self.diffusion_model = unet_model(**model_config.unet_config, device=device, operations=ops).eval()
        self.model_type = model_type
        self.model_sampling = ModelSamplingFlow(model_config)

    def get_dtype(self) -> torch.dtype:
        return self.diffusion_model.dtype

    def get_dtype_inference(self) -> torch.dtype:
        return self.manual_cast_dtype or self.get_dtype()

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_concat: Any = None, c_crossattn: Any = None,
                    control: Any = None, transformer_options: dict | None = None, **kwargs: Any) -> torch.Tensor:
        sigma = t
        dtype = self.get_dtype_inference()
        xc = self.model_sampling.calculate_input(sigma, x).to(dtype)
        t = self.model_sampling.timestep(t).float()
        extra = {}
        for k, v in kwargs.items():
            if hasattr(v, "dtype") and v.dtype not in (torch.int, torch.long):
                v = v.to(dtype)
            extra[k] = v
        t = self.process_timestep(t, x=x, **extra)
        if "latent_shapes" in extra:
            xc = sys.modules["comfy.utils"].unpack_latents(xc, extra.pop("latent_shapes"))
        out = self.diffusion_model(xc, t, context=c_crossattn, control=control,
                                   transformer_options=dict(transformer_options or {}), **extra)
        if not torch.is_tensor(out):
            out, _ = sys.modules["comfy.utils"].pack_latents(out)
        return self.model_sampling.calculate_denoised(sigma, out.float(), x)

    def process_timestep(self, timestep: torch.Tensor, **kwargs: Any) -> Any:
        return timestep

    def extra_conds(self, **kwargs: Any) -> dict:
        return {}

    def scale_latent_inpaint(self, sigma: Any, noise: Any, latent_image: Any, **kwargs: Any) -> Any:
        return self.model_sampling.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (len(noise.shape) - 1)),
                                                 noise, latent_image)

    def process_latent_in(self, latent: Any) -> Any:
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent: Any) -> Any:
        return self.latent_format.process_out(latent)

    def memory_required(self, input_shape: Any, cond_shapes: Any = None) -> int:
        return 0

    def load_model_weights(self, sd: dict, unet_prefix: str = "", assign: bool = False) -> BaseModel:
        to_load = {k[len(unet_prefix):]: v for k, v in sd.items() if k.startswith(unet_prefix)}
        self.diffusion_model.load_state_dict(to_load, strict=False, assign=assign)
        return self


class BASE:
    unet_config: dict = {}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 64}
    sampling_settings: dict = {}
    latent_format: Any = None
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]
    memory_usage_factor = 2.0
    manual_cast_dtype = None
    custom_operations = None
    optimizations = {"fp8": False}

    def __init__(self, unet_config: dict) -> None:
        self.unet_config = unet_config.copy()
        self.sampling_settings = self.sampling_settings.copy()
        self.latent_format = self.latent_format()
        self.optimizations = self.optimizations.copy()
        for k, v in self.unet_extra_config.items():
            self.unet_config[k] = v

    def set_inference_dtype(self, dtype: torch.dtype, manual_cast_dtype: torch.dtype | None) -> None:
        self.unet_config["dtype"] = dtype
        self.manual_cast_dtype = manual_cast_dtype


class ModelPatcher:
    def __init__(self, model: Any, load_device: Any = None, offload_device: Any = None, **_: Any) -> None:
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.model_options: dict = {"transformer_options": {}}
        self.cached_patcher_init = None

    def clone(self) -> ModelPatcher:
        n = ModelPatcher(self.model, self.load_device, self.offload_device)
        n.model_options = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                           for k, v in self.model_options.items()}
        return n

    def is_dynamic(self) -> bool:
        return False

    def get_model_object(self, name: str) -> Any:
        return getattr(self.model, name)

    def set_model_unet_function_wrapper(self, fn: Any) -> None:
        self.model_options["model_function_wrapper"] = fn

    def set_model_sampler_pre_cfg_function(self, fn: Any) -> None:
        self.model_options.setdefault("sampler_pre_cfg_function", []).append(fn)

    def set_model_sampler_post_cfg_function(self, fn: Any) -> None:
        self.model_options.setdefault("sampler_post_cfg_function", []).append(fn)


def convert_cond(cond: list) -> list[dict]:
    out = []
    for tensor, extra in cond:
        d = dict(extra)
        d["cross_attn"], d["model_conds"], d["uuid"] = tensor, dict(d.get("model_conds", {})), uuid.uuid4()
        out.append(d)
    return out


def process_conds(model: Any, noise: torch.Tensor, conds: dict, device: Any, latent_image: Any = None,
                  denoise_mask: Any = None, seed: Any = None, latent_shapes: Any = None) -> dict:
    for k in conds:
        new = []
        for c in conds[k]:
            params = dict(c, device=device, noise=noise, prompt_type=c.get("prompt_type", k),
                          latent_image=latent_image, denoise_mask=denoise_mask, seed=seed, latent_shapes=latent_shapes)
            c = dict(c)
            c["model_conds"] = {**c["model_conds"], **model.extra_conds(**params)}
            new.append(c)
        conds[k] = new
    return conds


def calc_cond_batch(model: Any, conds: list, x_in: torch.Tensor, timestep: torch.Tensor,
                    model_options: dict) -> list[torch.Tensor]:
    outs = [torch.zeros_like(x_in) for _ in conds]
    to_run = []
    for i, cond in enumerate(conds):
        for c in cond or []:
            processed = {k: v.process_cond(batch_size=x_in.shape[0], area=None) for k, v in c["model_conds"].items()}
            to_run.append((processed, i))
    while to_run:
        first = to_run[0][0]
        batch = [r for r in to_run
                 if r[0].keys() == first.keys() and all(first[k].can_concat(r[0][k]) for k in first)]
        to_run = [r for r in to_run if not any(r is b for b in batch)]
        c = {k: batch[0][0][k].concat([b[0][k] for b in batch[1:]]) for k in first}
        opts = dict(model_options.get("transformer_options", {}), cond_or_uncond=[b[1] for b in batch])
        CALLS.append({"batch": len(batch), "indices": [b[1] for b in batch]})
        c["transformer_options"] = opts
        args = (torch.cat([x_in] * len(batch)), torch.cat([timestep] * len(batch)))
        if "model_function_wrapper" in model_options:
            out = model_options["model_function_wrapper"](
                model.apply_model,
                {"input": args[0], "timestep": args[1], "c": c, "cond_or_uncond": opts["cond_or_uncond"]})
        else:
            out = model.apply_model(*args, **c)
        out = out.chunk(len(batch))
        for (_, i), o in zip(batch, out):
            outs[i] = outs[i] + o
    return outs


class CFGGuider:
    def __init__(self, model_patcher: Any) -> None:
        self.model_patcher, self.model_options = model_patcher, model_patcher.model_options
        self.original_conds: dict = {}
        self.cfg = 1.0

    def set_conds(self, positive: list, negative: list) -> None:
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg: float) -> None:
        self.cfg = cfg

    def inner_set_conds(self, conds: dict) -> None:
        for k, v in conds.items():
            self.original_conds[k] = convert_cond(v)

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict | None = None,
                 seed: Any = None) -> torch.Tensor:
        return self.predict_noise(x, timestep, model_options or {}, seed)

    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict | None = None,
                      seed: Any = None) -> torch.Tensor:
        neg = None if math.isclose(self.cfg, 1.0) else self.conds.get("negative")
        pos_out, neg_out = calc_cond_batch(self.inner_model, [self.conds.get("positive"), neg], x, timestep,
                                           model_options or {})
        return pos_out if neg is None else neg_out + (pos_out - neg_out) * self.cfg

    def inner_sample(self, noise: Any, latent_image: Any, device: Any, sampler: Any, sigmas: torch.Tensor,
                     denoise_mask: Any, callback: Any, disable_pbar: bool, seed: Any, latent_shapes: Any = None) -> Any:
        if torch.count_nonzero(latent_image) > 0:
            latent_image = self.inner_model.process_latent_in(latent_image)
        self.conds = process_conds(self.inner_model, noise, self.conds, device, latent_image, denoise_mask, seed,
                                   latent_shapes=latent_shapes)
        opts = dict(self.model_options)
        opts["transformer_options"] = dict(opts.get("transformer_options", {}), sample_sigmas=sigmas)
        samples = sampler.sample(self, sigmas, {"model_options": opts, "seed": seed}, callback, noise, latent_image,
                                 denoise_mask, disable_pbar)
        return self.inner_model.process_latent_out(samples.to(torch.float32))

    def outer_sample(self, noise: Any, latent_image: Any, sampler: Any, sigmas: torch.Tensor, denoise_mask: Any = None,
                     callback: Any = None, disable_pbar: bool = False, seed: Any = None,
                     latent_shapes: Any = None) -> Any:
        self.inner_model = self.model_patcher.model
        self.inner_model.current_patcher = self.model_patcher
        try:
            return self.inner_sample(noise.float(), latent_image.float(), torch.device("cpu"), sampler, sigmas,
                                     denoise_mask, callback, disable_pbar, seed, latent_shapes=latent_shapes)
        finally:
            del self.inner_model

    def sample(self, noise: Any, latent_image: Any, sampler: Any, sigmas: torch.Tensor, denoise_mask: Any = None,
               callback: Any = None, disable_pbar: bool = False, seed: Any = None) -> Any:
        utils = sys.modules["comfy.utils"]
        if sigmas.shape[-1] == 0:
            return latent_image
        if latent_image.is_nested:
            latent_image, shapes = utils.pack_latents(latent_image.unbind())
            noise, _ = utils.pack_latents(noise.unbind())
        else:
            shapes = [latent_image.shape]
        if denoise_mask is not None:
            masks = list(denoise_mask.unbind())[:len(shapes)] if denoise_mask.is_nested else [denoise_mask]
            masks += [torch.ones(s) for s in shapes[len(masks):]]
            masks = [m.expand(s) for m, s in zip(masks, shapes)]  # ComfyUI interpolates; ours are full-shape
            denoise_mask = (utils.pack_latents(masks)[0] if len(masks) > 1 else masks[0]).float()
        self.conds = {k: [dict(c) for c in v] for k, v in self.original_conds.items()}
        output = self.outer_sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                                   latent_shapes=shapes)
        del self.conds
        if len(shapes) > 1:
            output = sys.modules["comfy.nested_tensor"].NestedTensor(utils.unpack_latents(output, shapes))
        return output


def sample_euler(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Any = None, disable: Any = None) -> torch.Tensor:
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def sample_fake_unipc(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                      callback: Any = None, disable: Any = None) -> torch.Tensor:
    timesteps = sigmas[:]  # the real uni_pc writes through this view into the caller's tensor
    timesteps[-1] = 0.001
    return sample_euler(model, x, timesteps, extra_args, callback, disable)


class KSamplerX0Inpaint:
    def __init__(self, model: Any, sigmas: torch.Tensor) -> None:
        self.inner_model, self.sigmas = model, sigmas

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, denoise_mask: Any = None, model_options: Any = None,
                 seed: Any = None) -> torch.Tensor:
        if denoise_mask is not None:
            keep = 1.0 - denoise_mask
            inpaint = self.inner_model.inner_model.scale_latent_inpaint(x=x, sigma=sigma, noise=self.noise,
                                                                        latent_image=self.latent_image)
            x = x * denoise_mask + inpaint * keep
        out = self.inner_model(x, sigma, model_options=model_options or {}, seed=seed)
        if denoise_mask is not None:
            out = out * denoise_mask + self.latent_image * keep
        return out


class KSAMPLER:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def sample(self, model_wrap: Any, sigmas: torch.Tensor, extra_args: dict, callback: Any, noise: torch.Tensor,
               latent_image: Any = None, denoise_mask: Any = None, disable_pbar: bool = False) -> torch.Tensor:
        extra_args["denoise_mask"] = denoise_mask
        model_k = KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image, model_k.noise = latent_image, noise
        ms = model_wrap.inner_model.model_sampling
        x = ms.noise_scaling(sigmas[0], noise, latent_image)
        k_cb = None if callback is None else (lambda d: callback(d["i"], d["denoised"], d["x"], len(sigmas) - 1))
        samples = self.fn(model_k, x, sigmas, extra_args=extra_args, callback=k_cb, disable=disable_pbar)
        return ms.inverse_noise_scaling(sigmas[-1], samples)


def calculate_sigmas(model_sampling: Any, scheduler: str, steps: int) -> torch.Tensor:
    s = model_sampling
    if scheduler == "simple":
        ss = len(s.sigmas) / steps
        return torch.FloatTensor([float(s.sigmas[-(1 + int(x * ss))]) for x in range(steps)] + [0.0])
    if scheduler == "normal":
        ts = torch.linspace(float(s.timestep(s.sigma_max)), float(s.timestep(s.sigma_min)), steps)
        return torch.cat([s.sigma(ts), torch.zeros(1)]).float()
    raise ValueError(f"error invalid scheduler {scheduler}")


def prepare_noise(latent_image: Any, seed: int, noise_inds: Any = None) -> Any:
    gen = torch.Generator().manual_seed(seed)
    if getattr(latent_image, "is_nested", False):
        return sys.modules["comfy.nested_tensor"].NestedTensor(
            [torch.randn(t.shape, generator=gen) for t in latent_image.unbind()])
    return torch.randn(latent_image.shape, generator=gen)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Any = None, **_: Any) -> Any:
    from harmony_core.model.layers import sdpa_attention

    return sdpa_attention(q, k, v, heads, mask)


def _attention(*args: Any, **kwargs: Any) -> Any:
    """Like ComfyUI's ``wrap_attn``: an ``optimized_attention_override`` in ``transformer_options``
    is called with the attention function and the call's arguments."""
    override = (kwargs.get("transformer_options") or {}).get("optimized_attention_override")
    return override(_sdpa, *args, **kwargs) if override else _sdpa(*args, **kwargs)


def install(module: Any) -> None:
    """Register the fakes with ``module(name, **attrs)`` from ``comfy_stubs``."""
    module("comfy.ops", pick_operations=pick_operations, disable_weight_init=_ops(), manual_cast=_cast_ops())
    module("comfy.model_base", BaseModel=BaseModel, ModelType=ModelType)
    module("comfy.supported_models_base", BASE=BASE)
    module("comfy.model_patcher", ModelPatcher=ModelPatcher, CoreModelPatcher=ModelPatcher)
    module("comfy.samplers", CFGGuider=CFGGuider, calc_cond_batch=calc_cond_batch, KSAMPLER=KSAMPLER,
           sampler_object=lambda name: KSAMPLER(sample_fake_unipc if name == "uni_pc" else sample_euler),
           calculate_sigmas=calculate_sigmas, SAMPLER_NAMES=["euler", "uni_pc"], SCHEDULER_NAMES=["simple", "normal"],
           CALLS=CALLS)
    module("comfy.sample", prepare_noise=prepare_noise)
    module("comfy.ldm")
    module("comfy.ldm.modules")
    module("comfy.ldm.modules.attention", optimized_attention=_attention)
