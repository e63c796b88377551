"""Uploaded photos are hostile input: size, type and pixel count are checked before anything decodes them.

Only JPEG, PNG and WebP are accepted, recognised by their bytes (never by the name or the declared type). The
width and height come from the header (``lookout.face.image_io``, the check every image path uses), so an image
bomb (a small file that decodes to gigabytes) is refused before decoding. Each refusal is one sentence saying
what was wrong with the upload.
"""

from __future__ import annotations

import numpy as np

from lookout.errors import InputError
from lookout.face.image_io import decode_image, image_size

ACCEPTED = ("JPEG", "PNG", "WebP")


def read_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode an uploaded photo to BGR, or raise InputError with one sentence about the upload."""
    where = f"upload {name!r}" if name else "upload"
    if not data:
        raise InputError(where, "the file is empty")
    if len(data) > max_bytes:
        raise InputError(where, f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    try:
        found = image_size(data)
    except ValueError as err:
        raise InputError(where, f"not a readable image ({err})") from None
    if found is None or found[0] not in ACCEPTED:
        raise InputError(where, "not a JPEG, PNG or WebP image")
    return decode_image(data, where, max_pixels)
