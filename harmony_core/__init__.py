"""harmony_core: a pure-PyTorch implementation of Harmony (arXiv 2511.21579), joint audio+video
generation with Cross-Task Synergy, Global-Local Decoupled Interaction and SyncCFG.

Nothing heavy is imported here; import the submodules you need::

    from harmony_core.config import get_preset
    from harmony_core.model import HarmonyDiT, HarmonyConditions
    from harmony_core.sampling import GenerationRequest, GuidanceConfig, generate_latents
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
