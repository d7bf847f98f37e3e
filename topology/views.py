"""Web views for ops (more arrive with the ops issue)."""
from __future__ import annotations


def register(topology) -> None:
    app = topology.app

    @app.page("/stats/")
    async def stats(web, request):
        return web.json({
            **topology.stats.as_dict(),
            "definitions_ready": topology.definitions.ready.is_set(),
            "definitions": topology.definitions.versions,
        })
