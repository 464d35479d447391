"""GET /_matrix/client/versions: the spec versions and unstable features we claim.

Listing a version tells clients they may use everything that version defines, so the
list is what we implement, not what we aim for:

- v1.1 is the floor every current client needs to talk to us at all (matrix-js-sdk's
  minimum, and the first version with the /v3 paths). Its core and the modules our
  users rely on are served; known gaps answer M_UNRECOGNIZED: identity-server binding
  (/account/3pid/bind; e-mail addresses on accounts are served when e-mail is
  configured), SSO login (not offered in /login's flows), and application services,
  which are not built (so third-party networks list no protocol: /thirdparty/*).
  VoIP's /turnServer is served when a TURN server is configured (homeserver/voip.py).
  End-to-end encryption is served (homeserver/e2ee/: keys, cross-signing, to-device,
  device lists, key backup, across servers too) and proven with matrix-js-sdk's Rust
  crypto in tests/e2e and tests/interop.
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
- v1.7: POST /login/get_token, asynchronous uploads (/media/v1/create, PUT /upload),
  the full edit event bundled under m.replace with the original left unchanged,
  m.annotation relations, the event_property_is/contains push conditions and the
  m.mentions push rules, per-device transaction IDs: served. Its appservice ping is
  the Application Service API, which this server does not implement (no application
  service can register here, so no client of ours can call it).
- v1.8: reporting an event needs the reporter joined (served); v1.9: the
  .m.rule.suppress_edits push rule (served).
- v1.10: /.well-known/matrix/support (from config; 404 when none, as the spec allows),
  erasure on deactivation, `recurse` on /relations, Retry-After on 429: served.
- v1.11: authenticated media (/_matrix/client/v1/media/*), cross-signing's first
  upload without UIA: served. preview_url answers M_UNRECOGNIZED unless
  media.url_preview is enabled (a server choice, like the legacy endpoint);
  unsigned.membership is a SHOULD the spec lets servers omit, and is not added.
- v1.12: guests read media on the authenticated endpoints, `via` on join and knock,
  locked accounts (M_USER_LOCKED), the 403 on profile lookups: served.
- v1.13: room reports and M_THREEPID_MEDIUM_NOT_SUPPORTED (phone numbers); v1.14:
  user reports; v1.15: /room_summary and the hierarchy's new fields, and
  /auth_metadata answering 404 M_UNRECOGNIZED, the spec's answer for a server that
  uses the legacy (non-OAuth) authentication API: served.
- v1.16: `use_state_after` on /sync (`state_after`: the state changes up to the
  timeline's end; sync/streams/room_events.py), custom profile fields with
  m.profile_fields, `format=event` on /state, room version 12 with additional_creators
  (on upgrade, and the trusted_private_chat preset), m.room.create in stripped state:
  served.
- v1.17 removed the legacy mention push rules from the predefined list: they stay as
  server defaults that skip events with `m.mentions` (push/defaults.py says why, and
  the spec lets a server add defaults); its other changes are for the OAuth API and
  application services, neither offered here: served as far as it applies.
- v1.18 and later stay off the list: v1.18 adds the admin lock/suspend endpoints
  (/_matrix/client/v1/admin/lock|suspend, not routed) and policy servers (events in a
  room with m.room.policy are not checked with its policy server); v1.19
  unsigned.replaces_state. Add a version once what it defines in the core API and in
  the modules we serve is routed and behaves (the spec tools' spec_surface.py
  --missing shows what is not routed; test_listed_versions_route_what_they_added
  checks the claim against the spec).

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

SUPPORTED_VERSIONS = [f"v1.{minor}" for minor in range(1, 18)]  # v1.1 ... v1.17
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
