"""Sending related events and reading /relations and /threads over the client API."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import query

_txn = itertools.count()
V1 = "/_matrix/client/v1/"


async def send_event(api: Api, room: str, token: str, event_type: str, content: dict[str, Any]) -> str:
    path = f"rooms/{room}/send/{event_type}/rel{next(_txn)}"
    return (await api.put(path, content, token=token))["event_id"]


async def reply_in_thread(api: Api, room: str, token: str, root: str, body: str) -> str:
    return await send_event(api, room, token, "m.room.message", {
        "msgtype": "m.text", "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                         "m.in_reply_to": {"event_id": root}},
    })


async def edit(api: Api, room: str, token: str, original: str, body: str, event_type: str = "m.room.message",
               new_content: bool = True) -> str:
    content: dict[str, Any] = {
        "msgtype": "m.text", "body": f"* {body}", "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }
    if new_content:
        content["m.new_content"] = {"msgtype": "m.text", "body": body}
    return await send_event(api, room, token, event_type, content)


async def react(api: Api, room: str, token: str, target: str, key: str) -> str:
    return await send_event(api, room, token, "m.reaction", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key},
    })


async def reference(api: Api, room: str, token: str, target: str) -> str:
    return await send_event(api, room, token, "m.room.message", {
        "msgtype": "m.text", "body": "ref", "m.relates_to": {"rel_type": "m.reference", "event_id": target},
    })


async def redact(api: Api, room: str, token: str, event_id: str) -> str:
    return (await api.put(f"rooms/{room}/redact/{event_id}/red{next(_txn)}", {}, token=token))["event_id"]


async def relations(api: Api, room: str, event_id: str, token: str, *parts: str, expect: int = 200,
                    **params: Any) -> Any:
    tail = "".join("/" + quote(p, safe="") for p in parts)
    path = f"{V1}rooms/{room}/relations/{event_id}{tail}{query(**params)}"
    return (await api.request("GET", path, token=token, expect=expect))[1]


async def threads(api: Api, room: str, token: str, expect: int = 200, **params: Any) -> Any:
    return (await api.request("GET", f"{V1}rooms/{room}/threads{query(**params)}", token=token, expect=expect))[1]


async def get_event(api: Api, room: str, event_id: str, token: str) -> Any:
    return await api.get(f"rooms/{room}/event/{event_id}", token=token)


def bundled(event: dict[str, Any]) -> dict[str, Any]:
    return event.get("unsigned", {}).get("m.relations", {})
