"""Files written whole or not at all, and their digests.

First used in chapter "Brain MRI: data" (notebooks/brain_01_data.ipynb), where the split is
written as a manifest.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # no space, a file-size limit, a quota


def said_full(error: OSError, path: str | Path) -> OSError:
    """``error`` again, naming ``path`` and what to do when the disk (or a quota or a file-size
    limit) is full; any other ``OSError`` as it is."""
    if error.errno not in FULL:
        return error
    return OSError(
        error.errno,
        f"{error.strerror}: {path} could not be written; free space under {Path(path).parent} (or choose "
        "another output_dir) and run it again. The file that was there before is kept.",
    )


def write_bytes_atomically(path: str | Path, content: bytes) -> Path:
    """Write ``content`` to a temporary file beside ``path`` (its own name, so two writers
    never share it) and rename it over ``path``: a kill or a full disk keeps the old file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise said_full(error, path) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomically` for UTF-8 text."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def digest(content: bytes) -> str:
    """The first 16 hex digits of the SHA-256 of ``content``: how manifests and models are named."""
    return hashlib.sha256(content).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """:func:`digest` of a file's bytes."""
    return digest(Path(path).read_bytes())
