"""Reading images with errors that name the file and the reason."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lookout.errors import InputError

MAX_PIXELS = 50_000_000  # refuse decompression bombs


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode image bytes to a BGR uint8 array, or raise InputError naming ``source``."""
    if not data:
        raise InputError(source, "empty file")
    array = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(source, "not a readable image (corrupt, truncated or not an image format)")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise InputError(source, f"image too large ({image.shape[1]}x{image.shape[0]})")
    return image


def read_image(path: Path | str) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except IsADirectoryError:
        raise InputError(str(path), "is a directory") from None
    except OSError as err:
        raise InputError(str(path), err.strerror or str(err)) from None
    return decode_image(data, str(path))
