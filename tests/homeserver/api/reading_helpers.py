"""Helpers for the room read-path tests: users, rooms, membership changes over the
client API, and walking /messages page by page the way a client does."""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote, urlencode

from tests.conftest import Api


def uid(name: str) -> str:
    return f"@{name}:test.local"


async def user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def create(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


_txn_ids = itertools.count()


async def send(api: Api, room: str, token: str, body: str, **content: Any) -> str:
    path = f"rooms/{room}/send/m.room.message/txn{next(_txn_ids)}"
    return (await api.put(path, {"msgtype": "m.text", "body": body, **content}, token=token))["event_id"]


async def put_state(api: Api, room: str, token: str, event_type: str, content: dict[str, Any], state_key: str = "") -> str:
    return (await api.put(f"rooms/{room}/state/{event_type}/{quote(state_key)}", content, token=token))["event_id"]


async def set_visibility(api: Api, room: str, token: str, visibility: str) -> str:
    return await put_state(api, room, token, "m.room.history_visibility", {"history_visibility": visibility})


async def invite(api: Api, room: str, token: str, target: str) -> None:
    await api.post(f"rooms/{room}/invite", {"user_id": uid(target)}, token=token)


async def join(api: Api, room: str, token: str) -> None:
    await api.post(f"rooms/{room}/join", {}, token=token)


async def room_with_bob(api: Api) -> tuple[str, str, str]:
    """alice's tokens, bob's and a room of alice's that bob joined on her invite."""
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice)
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    return alice, bob, room


async def leave(api: Api, room: str, token: str) -> None:
    await api.post(f"rooms/{room}/leave", {}, token=token)


async def forget(api: Api, room: str, token: str) -> None:
    await api.post(f"rooms/{room}/forget", {}, token=token)


def query(**params: Any) -> str:
    clean = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in params.items() if v is not None}
    return "?" + urlencode(clean) if clean else ""


async def messages(api: Api, room: str, token: str, *, expect: int = 200, **params: Any) -> Any:
    return (await api.request("GET", f"rooms/{room}/messages{query(**params)}", token=token, expect=expect))[1]


async def walk(api: Api, room: str, token: str, *, max_pages: int = 1000, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of /messages from `params` until `end` is gone: (all events, pages)."""
    pages = []
    events: list[dict[str, Any]] = []
    for _ in range(max_pages):
        page = await messages(api, room, token, **params)
        pages.append(page)
        events.extend(page["chunk"])
        if "end" not in page:
            return events, pages
        params["from"] = page["end"]
    raise AssertionError("pagination did not end")


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message" and "body" in e["content"]]


async def errcode(api: Api, path: str, token: str | None, status: int) -> str:
    _, err = await api.request("GET", path, token=token, expect=status)
    return err["errcode"]
