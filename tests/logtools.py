"""Helpers for tests that build small logs and then tamper with their files."""
from __future__ import annotations

import struct
from pathlib import Path

from sim import DIGEST, FAR, key
from trustlog.core.encoding import canonical_bytes
from trustlog.core.events import (
    Envelope, ImageSigned, RepoCreated, RoleKeysSet, decode_envelope, decode_event, sign_event,
)
from trustlog.ingest.records import LogRecord, decode_record, encode_record
from trustlog.ingest.segment_log import encode_frame

_HEADER = struct.Struct(">II")

REPO_A = "registry.example.com/team/a"
REPO_B = "registry.example.com/team/b"
ROOT_A, TARGETS_A, CI = key("lt-root-a"), key("lt-targets-a"), key("lt-ci")
ROOT_B, TARGETS_B = key("lt-root-b"), key("lt-targets-b")


def history(n_tags: int = 12) -> list[Envelope]:
    """Two repositories; repo A delegates targets/ci; tags signed by targets and ci."""
    out = [
        sign_event(RepoCreated(REPO_A, 1, 0, [ROOT_A.public_key], 1, [TARGETS_A.public_key], 1, FAR), [ROOT_A]),
        sign_event(RepoCreated(REPO_B, 1, 0, [ROOT_B.public_key], 1, [TARGETS_B.public_key], 1, FAR), [ROOT_B]),
        sign_event(RoleKeysSet(REPO_A, 2, 0, "targets/ci", [CI.public_key], 1, FAR, ["build-*"]), [TARGETS_A]),
    ]
    va, vb = 2, 1
    for i in range(n_tags):
        va += 1
        if i % 2:
            out.append(sign_event(ImageSigned(REPO_A, va, 0, "targets/ci", f"build-{i}", DIGEST, i, FAR), [CI]))
        else:
            out.append(sign_event(ImageSigned(REPO_A, va, 0, "targets", f"v{i}", DIGEST, i, FAR), [TARGETS_A]))
        vb += 1
        out.append(sign_event(ImageSigned(REPO_B, vb, 0, "targets", f"v{i}", DIGEST, i, FAR), [TARGETS_B]))
    return out


def segment_path(d: Path) -> Path:
    segs = sorted((d / "log").glob("*.seg"))
    assert len(segs) == 1, segs
    return segs[0]


def read_frames(seg: Path) -> list[tuple[int, bytes]]:
    """``(byte position, body)`` of every frame of a segment file."""
    data = seg.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        length, _crc = _HEADER.unpack_from(data, pos)
        out.append((pos, data[pos + 8:pos + 8 + length]))
        pos += 8 + length
    return out


def write_frames(seg: Path, bodies: list[bytes]) -> None:
    """Rewrite a segment with valid CRCs (what a careful attacker does)."""
    seg.write_bytes(b"".join(encode_frame(b) for b in bodies))
    idx = seg.with_suffix(".idx")
    idx.unlink(missing_ok=True)


def decode_body(body: bytes):
    rec = decode_record(body)
    env = decode_envelope(rec.envelope, max_bytes=1 << 30)
    return rec, env, decode_event(env.payload)


def reencode(rec: LogRecord, env: Envelope) -> bytes:
    return encode_record(LogRecord(rec.log_time, canonical_bytes(env), rec.source))


def key_of(name: str):
    return key(name)


__all__ = ["DIGEST", "FAR", "history", "segment_path", "read_frames", "write_frames", "decode_body", "reencode"]
