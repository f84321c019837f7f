"""Files written so that a crash or a full disk mid-write leaves the old file or the new one, never half of one.

Every writer goes to a temporary sibling first and moves it into place with ``os.replace``, which is atomic on
POSIX and Windows within one file system. Readers of run files raise `RunFileError`,
naming the file and saying how to recover, when one is unreadable anyway (a disk error, a file edited by hand).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, move it onto ``path`` (a file or a folder).

    A folder replaces the old one in two renames: the old folder is moved aside first, so a crash between them
    leaves ``<path>.old-*`` and no half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if tmp.is_file():
                _fsync(tmp)
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    # Flush the data before the rename makes it visible, so a power loss cannot publish an empty file.
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
