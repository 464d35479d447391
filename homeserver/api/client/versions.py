"""GET /_matrix/client/versions: the spec versions and unstable features we claim.

Listing a version tells clients they may use everything that version defines, so the
list is what we implement, not what we aim for:

- v1.1 is the floor every current client needs to talk to us at all (matrix-js-sdk's
  minimum, and the first version with the /v3 paths). Its core and the modules our
  users rely on are served; known gaps answer M_UNRECOGNIZED: identity-server binding
  (/account/3pid/bind; e-mail addresses on accounts are served when e-mail is
  configured), and the optional modules we have not built (VoIP, ...). End-to-end
  encryption is served (homeserver/e2ee/: keys, cross-signing, to-device, device lists,
  key backup, across servers too) and proven with matrix-js-sdk's Rust crypto in
  tests/e2e and tests/interop.
- v1.2 added only the spaces hierarchy and registration token validity (both served).
- v1.3 added event relationships and their aggregations (/rooms/{roomId}/relations,
  bundled unsigned.m.relations; homeserver/relations/), refresh tokens, knock_restricted
  and an optional `from` on /messages: all served.
- v1.4 added edits (m.replace), threads (m.thread, /rooms/{roomId}/threads, `dir` on
  /relations), per-thread notifications and read receipts (thread_id), private read
  receipts, m.fully_read through /receipt, room_types on /publicRooms, copying a room's
  type on upgrade, the server ACL push rule and CORP headers on media: all served.
- v1.5 added m.reference relations (bundled); v1.6 /timestamp_to_event and the
  M_UNRECOGNIZED answers to unknown endpoints and methods: served (its SAS change,
  hkdf-hmac-sha256.v2, is between clients: to-device messages the server only carries).
- v1.7 and later stay off the list: v1.7 adds POST /login/get_token, which is not
  routed here. Clients gate features on versions (v1.11: authenticated media), and
  claiming one sends them to routes that do not exist here. Add a version once what it
  defines in the core API and in the modules we serve is routed
  (the spec tools' spec_surface.py --missing shows what is not).

Unstable features name stable-prefixed features we do implement from later versions,
for clients that gate on them instead of on a version:

- org.matrix.msc2285.stable: private read receipts (m.read.private; v1.4).
- org.matrix.msc3916.stable: authenticated media (/_matrix/client/v1/media/*; v1.11).
  Clients that see neither it nor v1.11 fall back to the legacy unauthenticated media
  endpoints, which are frozen by default here, so without it they could show no media.
- im.nheko.summary: room summaries on MSC3266's unstable paths (stable in v1.15 as
  /_matrix/client/v1/room_summary, served too), which matrix-js-sdk's getRoomSummary calls.
- uk.half-shot.msc2666.query_mutual_rooms: mutual rooms on MSC2666's last unstable path
  (stable in v1.19 as /_matrix/client/v1/mutual_rooms, served too), which matrix-js-sdk asks.
- org.matrix.simplified_msc3575: simplified sliding sync (MSC4186) at
  /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (homeserver/sync/sliding/),
  which Element X requires and matrix-js-sdk's SlidingSync speaks.

The r0.x versions are not listed although /_matrix/client/r0 paths are routed: no
client we serve needs them, and they would claim the same gaps as v1.1.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import json_response

SUPPORTED_VERSIONS = ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"]
UNSTABLE_FEATURES = {
    "org.matrix.msc2285.stable": True,
    "org.matrix.msc3916.stable": True,
    "im.nheko.summary": True,
    "uk.half-shot.msc2666.query_mutual_rooms": True,
    "org.matrix.simplified_msc3575": True,
}


async def get_versions(request: web.Request) -> web.Response:
    return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": UNSTABLE_FEATURES})


def register(app: web.Application) -> None:
    app.router.add_get("/_matrix/client/versions", get_versions)
