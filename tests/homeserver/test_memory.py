"""Freed memory given back: malloc's heap is trimmed after big responses, at most once
per interval, and the trims are counted in /metrics."""

from __future__ import annotations

import pytest

from homeserver.memory import HeapTrimmer

glibc_only = pytest.mark.skipif(not HeapTrimmer().available, reason="malloc_trim is glibc's")


@glibc_only
def test_trims_after_big_responses_at_most_once_per_interval() -> None:
    now = [100.0]
    trimmer = HeapTrimmer(min_bytes=1000, interval_s=1.0, monotonic=lambda: now[0])
    trimmer.after_response(None)  # a streamed response: its size is unknown
    trimmer.after_response(999)
    assert trimmer.trims == 0
    trimmer.after_response(1000)
    assert trimmer.trims == 1
    now[0] += 0.5
    trimmer.after_response(5000)  # too soon after the last
    assert trimmer.trims == 1
    now[0] += 0.5
    trimmer.after_response(5000)
    assert trimmer.trims == 2
    assert trimmer.trim_seconds > 0


@glibc_only
async def test_a_big_response_trims_the_heap(make_api) -> None:  # noqa: ANN001
    api = await make_api()
    token = (await api.register("big"))["access_token"]
    room = (await api.post("createRoom", {}, token=token))["room_id"]
    for i in range(6):  # a room state of about 360 KB
        await api.put(f"rooms/{room}/state/org.example.blob/{i}", {"data": "x" * 60_000}, token=token)
    before = api.hs.heap_trimmer.trims
    state = await api.get(f"rooms/{room}/state", token=token)
    assert len(state) > 6
    assert api.hs.heap_trimmer.trims == before + 1
    async with api.client.get("/metrics") as r:
        text = await r.text()
    assert f"accord_malloc_trims_total {before + 1}" in text.splitlines()


def test_trim_heap_runs_with_or_without_glibc() -> None:
    """`accord run` calls it once start-up is over; elsewhere than glibc it does nothing."""
    from homeserver.memory import trim_heap

    trim_heap()
    trim_heap()


def _heap_in_use() -> int:
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
        )]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    return int(libc.mallinfo2().uordblks)


@glibc_only
def test_kept_encoded_json_holds_its_size_only() -> None:
    """`EncodedJSON.of` (kept by the shared sections) holds bytes of its own size, not
    the buffer orjson wrote them into (ten times a 3 KB result)."""
    from homeserver.records.encoded_json import EncodedJSON

    data = {"events": [{"body": "x" * 3000}]}
    before = _heap_in_use()
    kept = [EncodedJSON.of(data) for _ in range(200)]
    per_value = (_heap_in_use() - before) / len(kept)
    assert len(kept[0].raw) > 3000 and per_value < 2 * len(kept[0].raw), per_value
