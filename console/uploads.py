"""Uploaded photos are hostile input: size, type and pixel count are checked before anything decodes them.

Only JPEG, PNG and WebP are accepted, recognised by their bytes (never by the name or the declared type).
The width and height come from the file's header, so an image bomb (a small file that decodes to gigabytes)
is refused before decoding. Every refusal is one sentence saying what was wrong with the upload.
"""

from __future__ import annotations

import struct

import numpy as np

from lookout.errors import InputError
from lookout.face.image_io import decode_image

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _SOF and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        if length < 2:
            return None
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def image_size(data: bytes, kind: str) -> tuple[int, int] | None:
    reader = {"png": _png_size, "jpeg": _jpeg_size, "webp": _webp_size}[kind]
    try:
        return reader(data)
    except struct.error:
        return None


def read_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode an uploaded photo to BGR, or raise InputError with one sentence about the upload."""
    where = f"upload {name!r}" if name else "upload"
    if not data:
        raise InputError(where, "the file is empty")
    if len(data) > max_bytes:
        raise InputError(where, f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    kind = sniff(data)
    if kind is None:
        raise InputError(where, "not a JPEG, PNG or WebP image")
    size = image_size(data, kind)
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise InputError(where, f"the {kind.upper()} header is damaged: no image size in it")
    if size[0] * size[1] > max_pixels:
        raise InputError(
            where, f"the image is {size[0]:,} x {size[1]:,} pixels; the limit is {max_pixels / 1e6:.0f} megapixels"
        )
    return decode_image(data, where)
