"""The Harmony dual-stream DiT (paper §3.1-3.3)."""

from .conditions import ForwardOptions, HarmonyConditions
from .dit import HarmonyDiT, count_parameters
from .layers import sdpa_attention

__all__ = ["HarmonyDiT", "HarmonyConditions", "ForwardOptions", "count_parameters", "sdpa_attention"]
