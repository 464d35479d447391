"""GET /metrics (and Synapse's /_synapse/metrics path) for Prometheus scrapers."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import get_hs


async def get_metrics(request: web.Request) -> web.Response:
    hs = get_hs(request)
    text = hs.metrics.render(hs) + await hs.analytics.prometheus(len(await hs.partners.active_partners()))
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def register_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/_synapse/metrics", get_metrics)
