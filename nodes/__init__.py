"""ComfyUI adapters of the Harmony pack (V3 schema). Imported only by the pack's root
``__init__.py``; never imported by ``harmony_core``.

The node classes arrive with the node-pack milestone; until then the extension registers no nodes.
"""

from comfy_api.latest import ComfyExtension

NODES: list[type] = []


class HarmonyExtension(ComfyExtension):
    async def get_node_list(self) -> list[type]:
        return list(NODES)
