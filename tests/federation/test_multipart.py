"""The multipart/mixed answers of the federation media endpoints: what we write
reads back, and hostile bodies are refused within their caps."""

from __future__ import annotations

import os

import pytest

from federation.multipart import (
    MAX_HEADER_BLOCK_BYTES,
    MAX_METADATA_BYTES,
    MultipartError,
    PartTooLargeError,
    boundary_of,
    media_head,
    media_tail,
    multipart_content_type,
    new_boundary,
    read_media_multipart,
    redirect_body,
)


class Chunks:
    """A byte source handing out ``body`` in pieces of ``size`` (boundaries split
    across reads), counting how much was read."""

    def __init__(self, body: bytes, size: int = 7) -> None:
        self.body = body
        self.size = size
        self.pos = 0

    async def read(self, n: int = -1) -> bytes:
        take = min(self.size, n if n > 0 else self.size)
        out = self.body[self.pos : self.pos + take]
        self.pos += len(out)
        return out


async def collect(body: bytes, boundary: str, max_bytes: int = 1 << 20, size: int = 7):  # noqa: ANN201
    part = await read_media_multipart(Chunks(body, size), boundary, max_bytes=max_bytes)
    data = b""
    if part.chunks is not None:
        async for chunk in part.chunks:
            data += chunk
    return part, data


def answer(boundary: str, payload: bytes, content_type: str = "image/png", filename: str | None = "a.png") -> bytes:
    return (
        media_head(boundary, {}, content_type=content_type,
                   content_disposition=f'inline; filename="{filename}"' if filename else None)
        + payload
        + media_tail(boundary)
    )


@pytest.mark.parametrize("size", [1, 3, 64, 65536])
async def test_round_trip_in_any_chunking(size: int) -> None:
    boundary = new_boundary()
    payload = os.urandom(5000) + b"\r\n--" + boundary[:-1].encode() + b"\r\n" + os.urandom(100)
    part, data = await collect(answer(boundary, payload), boundary, size=size)
    assert data == payload
    assert part.metadata == {}
    assert part.content_type == "image/png"
    assert part.content_disposition == 'inline; filename="a.png"'
    assert part.location is None


async def test_empty_file_and_preamble() -> None:
    boundary = "simple-boundary"
    part, data = await collect(b"ignored preamble\r\n" + answer(boundary, b""), boundary)
    assert data == b""


async def test_redirect_part() -> None:
    boundary = new_boundary()
    part, data = await collect(redirect_body(boundary, {"x": 1}, "https://cdn.example/f"), boundary)
    assert part.location == "https://cdn.example/f"
    assert part.metadata == {"x": 1}
    assert part.chunks is None


def test_content_type_and_boundary() -> None:
    assert boundary_of(multipart_content_type("abc")) == "abc"
    assert boundary_of('multipart/mixed; boundary="a b:c"') == "a b:c"
    for bad in (None, "", "application/json", "multipart/mixed", "multipart/mixed; boundary=",
                "multipart/mixed; boundary=" + "x" * 71, 'multipart/mixed; boundary="a\\"b"'):
        with pytest.raises(MultipartError):
            boundary_of(bad)


def test_part_headers_are_never_a_header_injection() -> None:
    head = media_head("b", {}, content_type="image/png", content_disposition='inline; filename="a\r\nSet-Cookie: x"')
    assert b"\r\nSet-Cookie" not in head
    head = media_head("b", {}, content_type="text/plain\r\nX-Evil: 1")
    assert b"\r\nX-Evil" not in head


async def test_missing_boundary_in_body() -> None:
    with pytest.raises(MultipartError):
        await collect(b"just some bytes with no delimiter at all" * 10, "nope")


async def test_huge_preamble_is_refused_without_reading_everything() -> None:
    source = Chunks(b"x" * 10_000_000, size=65536)
    with pytest.raises(MultipartError):
        await read_media_multipart(source, "b", max_bytes=100)
    assert source.pos < 200_000


async def test_huge_part_headers_are_refused() -> None:
    boundary = "b"
    body = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nX-Big: " + b"a" * (MAX_HEADER_BLOCK_BYTES * 4)
    source = Chunks(body + b"\r\n\r\ndata\r\n--b--\r\n", size=4096)
    with pytest.raises(MultipartError, match="too long"):
        await read_media_multipart(source, boundary, max_bytes=100)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
    with pytest.raises(MultipartError, match="too many"):
        await collect(b"--b\r\n" + many + b"\r\n{}\r\n--b--\r\n", boundary)


async def test_no_second_part() -> None:
    with pytest.raises(MultipartError, match="no second part"):
        await collect(b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n", "b")
    with pytest.raises(MultipartError, match="no parts"):
        await collect(b"--b--\r\n", "b")


async def test_metadata_must_be_a_small_json_object() -> None:
    for meta in (b"[1]", b"not json", b"{" * 1000):
        with pytest.raises(MultipartError):
            await collect(b"--b\r\nContent-Type: application/json\r\n\r\n" + meta + b"\r\n--b\r\n\r\nx\r\n--b--", "b")
    big = b'{"a":"' + b"x" * MAX_METADATA_BYTES + b'"}'
    with pytest.raises(MultipartError, match="too long"):
        await collect(b"--b\r\nContent-Type: application/json\r\n\r\n" + big + b"\r\n--b\r\n\r\nx\r\n--b--", "b", size=65536)
    with pytest.raises(MultipartError, match="not application/json"):
        await collect(b"--b\r\nContent-Type: text/html\r\n\r\n{}\r\n--b\r\n\r\nx\r\n--b--", "b")


async def test_oversized_part_stops_at_the_cap() -> None:
    boundary = new_boundary()
    source = Chunks(answer(boundary, b"z" * 5_000_000), size=65536)
    part = await read_media_multipart(source, boundary, max_bytes=100_000)
    assert part.chunks is not None
    got = 0
    with pytest.raises(PartTooLargeError):
        async for chunk in part.chunks:
            got += len(chunk)
    assert got <= 100_000
    assert source.pos < 400_000


async def test_exactly_max_bytes_is_allowed() -> None:
    boundary = new_boundary()
    _, data = await collect(answer(boundary, b"q" * 1000), boundary, max_bytes=1000)
    assert len(data) == 1000


async def test_truncated_body_is_an_error() -> None:
    boundary = new_boundary()
    whole = answer(boundary, b"p" * 10_000)
    for cut in (len(whole) - len(media_tail(boundary)), len(whole) - 3, 200):
        with pytest.raises(MultipartError):
            await collect(whole[:cut], boundary)


async def test_more_than_two_parts_is_an_error() -> None:
    boundary = "b"
    body = b"--b\r\n\r\n{}\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n"
    with pytest.raises(MultipartError, match="more than two"):
        await collect(body, boundary)
