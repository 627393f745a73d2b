"""ComfyUI entry point of the Harmony node pack (ComfyUI loads this file; nothing else lives here).

The pure-PyTorch library is ``harmony_core``; the ComfyUI adapters are in ``nodes``.
"""

WEB_DIRECTORY = "./nodes/web"  # node help pages (nodes/web/docs/<NodeId>.md) for ComfyUI's frontend


async def comfy_entrypoint():
    from .nodes import HarmonyExtension

    return HarmonyExtension()
