"""Thumbnails: which size answers a request, and making one with Pillow.

Everything here that touches pixels is synchronous and CPU-bound: callers run it in
a worker thread (`MediaRepository` does, behind a semaphore), never on the event loop.

The spec's rules ("Thumbnails" in the content repository module):

- ``crop`` gives an image of exactly the requested aspect ratio, at least as large as
  requested; ``scale`` keeps the original aspect ratio and fits the requested box.
- Never upscale; never return a smaller thumbnail than requested unless the original
  makes it impossible, in which case the original itself is served.

Only JPEG, PNG, GIF and WebP are decoded (Pillow is told so: no other decoder runs on
uploaded bytes); SVG and everything else are refused. Images whose pixel count
exceeds the configured cap are refused before their pixels are decoded (a small file
can declare enormous dimensions: a decompression bomb).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

# Content types we thumbnail, and the Pillow decoder allowed for each.
THUMBNAILABLE: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/png": "PNG",
    "image/apng": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
_DECODERS = sorted(set(THUMBNAILABLE.values()))
METHODS = ("crop", "scale")


@dataclass(frozen=True)
class ThumbnailParams:
    """A thumbnail request: the smallest size the client wants (both > 0), the method
    (``"crop"`` or ``"scale"``) and whether an animated source may stay animated
    (``animated=True``; otherwise the first frame is used)."""

    width: int
    height: int
    method: str = "scale"
    animated: bool = False


@dataclass(frozen=True)
class ThumbnailSize:
    """A thumbnail size to pre-generate at upload (config ``media.thumbnail_sizes``)."""

    width: int
    height: int
    method: str


class ThumbnailError(Exception):
    """No thumbnail can be made. ``too_large``: the image has more pixels than allowed
    (the spec's 413 M_TOO_LARGE); otherwise the content is not an image we decode
    (400 M_UNKNOWN)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class ThumbnailResult:
    """What `make_thumbnail` wrote: ``use_original`` is True when the source is no
    larger than requested (and static or animation is wanted): serve the original."""

    use_original: bool
    content_type: str | None = None
    width: int = 0
    height: int = 0


def can_thumbnail(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in THUMBNAILABLE


def choose_size(
    params: ThumbnailParams, pregenerated: list[ThumbnailSize]
) -> ThumbnailSize:
    """The size to serve for a request: the smallest pre-generated size of the same
    method that is at least as large as requested in both dimensions (for ``crop``
    also of the requested aspect ratio); else exactly the requested size (made on
    demand and cached)."""
    fitting = [
        s for s in pregenerated
        if s.method == params.method and s.width >= params.width and s.height >= params.height
        and (params.method != "crop" or s.width * params.height == s.height * params.width)
    ]
    if fitting:
        return min(fitting, key=lambda s: (s.width * s.height, s.width))
    return ThumbnailSize(params.width, params.height, params.method)


def target_dimensions(src_w: int, src_h: int, width: int, height: int, method: str) -> tuple[int, int] | None:
    """The output size for a source of ``src_w`` x ``src_h``, or None when only an
    upscale could reach it (serve the original then).

    ``scale``: the largest size of the source's aspect ratio fitting in the box (one
    side equals the request). ``crop``: exactly ``width`` x ``height``."""
    if method == "crop":
        if src_w < width or src_h < height:
            return None
        return width, height
    factor = min(width / src_w, height / src_h)
    if factor >= 1:
        return None
    return max(1, round(src_w * factor)), max(1, round(src_h * factor))


def make_thumbnail(
    src_path: str, declared_type: str | None, size: ThumbnailSize, animated: bool,
    out_path: str, *, max_pixels: int,
) -> ThumbnailResult:
    """Write a thumbnail of ``src_path`` at ``size`` to ``out_path`` (synchronous;
    run it in a thread). The EXIF orientation is applied first. An animated GIF or
    WebP stays animated only when ``animated`` is True. Raises ThumbnailError when the
    source cannot or must not be decoded."""
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    expected = THUMBNAILABLE.get((declared_type or "").split(";")[0].strip().lower())
    if expected is None:
        raise ThumbnailError("Cannot generate thumbnails for this content type")
    try:
        im = Image.open(src_path, formats=_DECODERS)
    except Image.DecompressionBombError:
        raise ThumbnailError("Image is too large to thumbnail", too_large=True) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ThumbnailError("Cannot generate thumbnails for the requested content") from None
    with im:
        src_w, src_h = im.size
        frames = getattr(im, "n_frames", 1) if animated else 1
        if src_w <= 0 or src_h <= 0 or src_w * src_h > max_pixels or src_w * src_h * frames > max_pixels * 4:
            raise ThumbnailError("Image is too large to thumbnail", too_large=True)
        fmt = im.format or expected
        is_animated = bool(getattr(im, "is_animated", False))
        keep_animation = animated and is_animated and fmt in ("GIF", "WEBP")
        orientation = im.getexif().get(0x0112, 1) if fmt in ("JPEG", "WEBP", "PNG") else 1
        if orientation in (5, 6, 7, 8):
            src_w, src_h = src_h, src_w
        dims = target_dimensions(src_w, src_h, size.width, size.height, size.method)
        if dims is None and (keep_animation or not is_animated):
            return ThumbnailResult(use_original=True)
        if dims is None:  # a small animated source, a static thumbnail wanted: its first frame
            dims = (src_w, src_h)
        try:
            if keep_animation:
                out_frames = []
                durations = []
                for frame in ImageSequence.Iterator(im):
                    durations.append(frame.info.get("duration", 100))
                    out_frames.append(_resize(frame.convert("RGBA"), dims, size.method))
                out_fmt = fmt
                save_kwargs = {"save_all": True, "append_images": out_frames[1:], "loop": im.info.get("loop", 0),
                               "duration": durations, "disposal": 2}
                first = out_frames[0]
            else:
                im.seek(0)
                if fmt == "JPEG":  # decode at the smallest 1/2^n scale still at least as large
                    im.draft("RGB", _decode_size(src_w, src_h, dims, size.method, orientation in (5, 6, 7, 8)))
                im.load()
                frame = ImageOps.exif_transpose(im) or im
                has_alpha = frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info)
                if fmt == "JPEG" and not has_alpha:
                    out_fmt, frame = "JPEG", frame.convert("RGB")
                else:
                    out_fmt, frame = "PNG", frame.convert("RGBA" if has_alpha else "RGB")
                first = _resize(frame, dims, size.method)
                save_kwargs = {"quality": 85} if out_fmt == "JPEG" else {"optimize": False}
            with open(out_path, "wb") as f:
                first.save(f, format=out_fmt, **save_kwargs)
                f.flush()
                os.fsync(f.fileno())
        except Image.DecompressionBombError:
            raise ThumbnailError("Image is too large to thumbnail", too_large=True) from None
        except (OSError, ValueError, EOFError, SyntaxError):
            raise ThumbnailError("Cannot generate thumbnails for the requested content") from None
        out_type = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}[out_fmt]
        return ThumbnailResult(False, out_type, first.width, first.height)


def _decode_size(
    src_w: int, src_h: int, dims: tuple[int, int], method: str, rotated: bool,
) -> tuple[int, int]:
    """The size the resize starts from (before a crop, the scaled whole), in the file's
    own orientation."""
    w, h = dims
    if method == "crop":
        factor = max(w / src_w, h / src_h)
        w, h = math.ceil(src_w * factor), math.ceil(src_h * factor)
    return (h, w) if rotated else (w, h)


def _resize(frame: PILImage, dims: tuple[int, int], method: str) -> PILImage:
    from PIL import Image

    w, h = dims
    if method == "crop":
        factor = max(w / frame.width, h / frame.height)
        sw, sh = max(w, math.ceil(frame.width * factor)), max(h, math.ceil(frame.height * factor))
        if (sw, sh) != frame.size:
            frame = frame.resize((sw, sh), Image.Resampling.LANCZOS, reducing_gap=2.0)
        left, top = (sw - w) // 2, (sh - h) // 2
        return frame.crop((left, top, left + w, top + h))
    if (w, h) == frame.size:
        return frame.copy()
    return frame.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=2.0)
