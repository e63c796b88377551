"""Reading images with errors that name the file and the reason, and without decompression bombs.

A 1 MB PNG can declare 20,000 x 20,000 pixels and take 1.2 GB once decoded; at
60,000 x 60,000 OpenCV itself gives up with an exception. So every path that decodes
an image (detect, embed, search, gallery build, the device's folder source, the
console's upload) goes through :func:`decode_image`, which reads the width and height
from the file's header first (PNG, JPEG, WebP, BMP, TIFF, GIF, PNM) and refuses an
image over ``max_pixels`` (default 50 megapixels) before decoding a byte of it. A
format whose header this module cannot read is refused too: fail closed.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lookout.errors import InputError
from lookout.files import read_file_bytes

MAX_PIXELS = 50_000_000  # default limit: a 50-megapixel photo (e.g. 8660 x 5773) decodes to 150 MB
MAX_FILE_BYTES = 100 << 20  # an image file larger than this is refused before it is read
FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF, PNM"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class _Truncated(Exception):
    """The header ends before it says how large the image is."""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise _Truncated
    return struct.unpack_from(fmt, data, offset)


def _png(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise _Truncated
    return _unpack(">II", data, 16)


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    while True:
        while i < len(data) and data[i] != 0xFF:  # skip to the next marker
            i += 1
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(data):
            raise _Truncated
        marker = data[i]
        i += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            continue
        (length,) = _unpack(">H", data, i)
        if marker in _JPEG_SOF:
            height, width = _unpack(">HH", data, i + 3)
            return width, height
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            raise _Truncated
        i += length


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        if len(data) < 30:
            raise _Truncated
        return w, h
    if chunk == b"VP8L":
        (bits,) = _unpack("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = _unpack("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    raise _Truncated


def _bmp(data: bytes) -> tuple[int, int]:
    (header_size,) = _unpack("<I", data, 14)
    if header_size == 12:
        return _unpack("<HH", data, 18)
    w, h = _unpack("<ii", data, 18)
    return abs(w), abs(h)


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = _unpack(order + "I", data, 4)
    (count,) = _unpack(order + "H", data, ifd)
    found: dict[int, int] = {}
    for n in range(min(count, 4096)):
        tag, kind, _count = _unpack(order + "HHI", data, ifd + 2 + 12 * n)
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")
            (found[tag],) = _unpack(fmt, data, ifd + 2 + 12 * n + 8)
    if 256 not in found or 257 not in found:
        raise _Truncated
    return found[256], found[257]


def _gif(data: bytes) -> tuple[int, int]:
    """The logical screen, or the first frame when it reaches beyond it."""
    width, height = _unpack("<HH", data, 6)
    (flags,) = _unpack("<B", data, 10)
    i = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while i < len(data):
        if data[i] == 0x2C:  # image descriptor
            left, top, w, h = _unpack("<HHHH", data, i + 1)
            return max(width, left + w), max(height, top + h)
        if data[i] != 0x21:  # not an extension: the trailer or garbage
            break
        i += 2
        while i < len(data) and data[i]:  # extension sub-blocks
            i += data[i] + 1
        i += 1
    return width, height


def _pnm(data: bytes) -> tuple[int, int]:
    numbers: list[int] = []
    for line in data[2:4096].split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            if not word.isdigit():
                raise _Truncated
            numbers.append(int(word))
            if len(numbers) == 2:
                return numbers[0], numbers[1]
    raise _Truncated


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the header without decoding; None for a format not read here.
    Raises ``ValueError`` when the header is cut short or damaged."""
    head = bytes(data[:16])
    readers = (
        (head.startswith(b"\x89PNG\r\n\x1a\n"), "PNG", _png),
        (head.startswith(b"\xff\xd8\xff"), "JPEG", _jpeg),
        (head[:4] == b"RIFF" and head[8:12] == b"WEBP", "WebP", _webp),
        (head.startswith(b"BM"), "BMP", _bmp),
        (head[:4] in (b"II*\x00", b"MM\x00*"), "TIFF", _tiff),
        (head[:6] in (b"GIF87a", b"GIF89a"), "GIF", _gif),
        (head[:1] == b"P" and head[1:2] in b"123456" and len(head) > 2 and head[2:3].isspace(), "PNM", _pnm),
    )
    for matches, name, reader in readers:
        if matches:
            try:
                width, height = reader(data)
            except _Truncated:
                raise ValueError(f"{name} header is truncated or damaged") from None
            return name, int(width), int(height)
    return None


def check_image_size(data: bytes, source: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header, or InputError naming ``source``: unknown format, damaged
    header, no pixels, or more than ``max_pixels``. Nothing is decoded."""
    if not data:
        raise InputError(source, "empty file")
    try:
        found = image_size(data)
    except ValueError as err:
        raise InputError(source, f"not a readable image ({err})") from None
    if found is None:
        raise InputError(source, f"not a readable image (not one of {FORMATS})")
    name, width, height = found
    if width <= 0 or height <= 0:
        raise InputError(source, f"not a readable image ({name} header says {width}x{height} pixels)")
    if width * height > max_pixels:
        raise InputError(
            source,
            f"image too large: {name} of {width}x{height} = {width * height / 1e6:.1f} megapixels, "
            f"more than the {max_pixels / 1e6:g} allowed (refused before decoding)",
        )
    return width, height


def decode_image(data: bytes, source: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to a BGR uint8 array, or raise InputError naming ``source``.
    The size is checked from the header first (:func:`check_image_size`)."""
    check_image_size(data, source, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise InputError(source, f"not a readable image ({str(err).strip().splitlines()[-1]})") from None
    if image is None:
        raise InputError(source, "not a readable image (corrupt, truncated or not an image format)")
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied
        raise InputError(source, f"image too large ({image.shape[1]}x{image.shape[0]})")
    return image


def read_image_file(path: Path | str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """An image file's bytes: a regular file of at most ``max_bytes`` (lookout.files), else one InputError."""
    return read_file_bytes(path, max_bytes)


def read_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    return decode_image(read_image_file(path), str(path), max_pixels)
