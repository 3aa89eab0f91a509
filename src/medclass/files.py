"""Files written whole or not at all, and their digests.

First used in chapter "Brain MRI: data" (notebooks/brain_01_data.ipynb), where the split is
written as a manifest.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def write_bytes_atomically(path: str | Path, content: bytes) -> Path:
    """Write ``content`` to a temporary file beside ``path`` (its own name, so two writers
    never share it) and rename it over ``path``: a kill or a full disk keeps the old file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
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
