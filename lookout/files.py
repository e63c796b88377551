"""Reading an input file the operator named, safely: regular files only, size-capped.

A path given by mistake (``/dev/zero``, a FIFO, a multi-gigabyte log passed as ``--policy``) must end
in one line naming it, never in a MemoryError, the OOM killer or a read that blocks for ever. The
kind and size are checked before the file is opened (opening a pipe would block), and the read
stops one byte past the cap (a file that grows while it is read).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lookout.errors import InputError

MAX_TEXT_FILE_BYTES = 1 << 20  # configs, policies, JSON state: far above any real one
MAX_KEY_FILE_BYTES = 64 << 10  # PEM keys and certificates


def read_file_bytes(path: Path | str, max_bytes: int, what: str = "") -> bytes:
    """A regular file's bytes, or :class:`InputError` naming it: missing, a folder, a device or pipe, too large.
    ``what`` ('policy file') starts the reason when given."""
    path = Path(path)
    lead = f"{what}: " if what else ""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(str(path), f"{lead}is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(str(path), f"{lead}not a regular file (a device, pipe or socket)")
        if info.st_size > max_bytes:
            raise InputError(str(path), f"{lead}{info.st_size} bytes, more than the {max_bytes} allowed")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(str(path), f"{lead}no such file") from None
    except OSError as err:
        raise InputError(str(path), f"{lead}{err.strerror or err}") from None
    if len(data) > max_bytes:
        raise InputError(str(path), f"{lead}more than the {max_bytes} bytes allowed")
    return data


def read_text_file(path: Path | str, what: str = "", max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """:func:`read_file_bytes` decoded as UTF-8 (one line naming the file if it is not)."""
    data = read_file_bytes(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(str(path), f"{what + ': ' if what else ''}not UTF-8 text (byte {err.start})") from None
