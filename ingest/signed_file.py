"""The on-disk frame of a snapshot (``ingest/snapshots.py``) and of its repository
index (``ingest/snapshot_index.py``): an 8-byte magic, the length of the signed header
(4 bytes, big-endian), the signed header, then the body, written atomically.

A reader trusts nothing here before the header's signature checks out; the writer only
guarantees that a file under its final name is complete: it is written beside it as
``NAME.tmp``, fsynced and renamed over it, and a failed write leaves no ``.tmp`` behind.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Final

from trustlog.core.errors import EncodingError

HEADER_LEN: Final = struct.Struct(">I")


def write_signed_file(path: Path, magic: bytes, signed_header: bytes, body: bytes) -> None:
    """Write ``magic | len(signed_header) | signed_header | body`` to ``path`` atomically;
    an OSError names ``path`` (not the temporary file)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(magic + HEADER_LEN.pack(len(signed_header)) + signed_header)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)   # no leftovers after a full disk
        raise OSError(e.errno, e.strerror, str(path)) from e


def read_signed_header(f: BinaryIO, magic: bytes, what: str, max_len: int) -> tuple[bytes, int]:
    """The signed header of an open file written by :func:`write_signed_file` (still to
    be checked by the caller) and the byte where the body starts; raises
    :class:`EncodingError` when the file is not a ``what`` or its header is over ``max_len``."""
    head = f.read(len(magic) + HEADER_LEN.size)
    if len(head) != len(magic) + HEADER_LEN.size or head[:len(magic)] != magic:
        raise EncodingError(f"not a {what}")
    (n,) = HEADER_LEN.unpack(head[len(magic):])
    if n > max_len:
        raise EncodingError(f"{what} header of {n} bytes is implausible")
    return f.read(n), len(head) + n
