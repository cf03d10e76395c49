"""Timestamp and snapshot: is this the consistent set of files the repository published?

Checked by the importer before a targets file goes to the fold (no I/O here): the
timestamp and the snapshot are signed by a threshold of the keys the current root
gives them, the timestamp names this snapshot, and every targets file is the one the
snapshot names (its version; its length and SHA-256 where the snapshot gives them, as
Notary's do). A file that is not is refused with ``SNAPSHOT_MISMATCH``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .keys import crypto_valid, key_material_id
from .reasons import Reject
from .tuf_format import MetaFileInfo, Root, Snapshot, TufFormatError, parse_snapshot_or_timestamp


class InconsistentMetadataError(TufFormatError):
    """The served files are not one consistent publication; ``reason`` names why."""

    def __init__(self, reason: Reject, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _threshold(root: Root, role: str, snap: Snapshot) -> None:
    rk = root.roles[role]
    counted: set[bytes] = set()
    for s in snap.meta_signed.signatures:
        if s.keyid not in rk.keyids:
            continue
        k = root.keys[s.keyid]
        if k.key is None or (s.method and s.method != k.method):
            continue
        if not crypto_valid(k.key.alg, k.key.public, snap.meta_signed.message, s.sig):
            raise InconsistentMetadataError(Reject.BAD_SIGNATURE, f"{role}: signature by {s.keyid[:16]}… does not verify")
        counted.add(key_material_id(k.key))
    if len(counted) < rk.threshold:
        raise InconsistentMetadataError(Reject.THRESHOLD_NOT_MET,
                                        f"{role}: {len(counted)} of the {rk.threshold} signatures needed")


def _matches(info: MetaFileInfo, data: bytes, version: int | None) -> str | None:
    if info.length is not None and info.length != len(data):
        return f"length {len(data)}, the snapshot says {info.length}"
    if info.sha256 is not None and info.sha256 != hashlib.sha256(data).hexdigest():
        return "its SHA-256 is not the one the snapshot names"
    if version is not None and info.version and info.version != version:
        return f"version {version}, the snapshot names version {info.version}"
    return None


@dataclass(frozen=True, slots=True)
class Publication:
    """A verified timestamp + snapshot: which version (and hash) of each file is current."""

    dialect: str
    snapshot: Snapshot
    snapshot_version: int
    timestamp_version: int

    def entry(self, role: str) -> MetaFileInfo | None:
        return self.snapshot.meta.get(role if self.dialect == "notary" else f"{role}.json")

    def check(self, role: str, data: bytes, version: int) -> None:
        """Raise ``SNAPSHOT_MISMATCH`` unless ``data`` is the file the snapshot names."""
        info = self.entry(role)
        if info is None:
            raise InconsistentMetadataError(Reject.SNAPSHOT_MISMATCH, f"{role}: the snapshot does not list it")
        why = _matches(info, data, version)
        if why:
            raise InconsistentMetadataError(Reject.SNAPSHOT_MISMATCH, f"{role}: {why}")


def check_publication(root: Root, timestamp: bytes, snapshot: bytes, now: int) -> Publication:
    """Verify ``timestamp`` and ``snapshot`` against ``root`` and each other, and that
    neither had expired at ``now`` (seconds): a stale publication brings nothing in."""
    ts = parse_snapshot_or_timestamp(timestamp, "timestamp")
    _threshold(root, "timestamp", ts)
    sn = parse_snapshot_or_timestamp(snapshot, "snapshot")
    _threshold(root, "snapshot", sn)
    for name, m in (("timestamp", ts), ("snapshot", sn)):
        if m.meta_signed.expires <= now:
            raise InconsistentMetadataError(Reject.METADATA_EXPIRED, f"{name} expired at {m.meta_signed.expires}")
    key = "snapshot" if ts.meta_signed.dialect == "notary" else "snapshot.json"
    info = ts.meta.get(key)
    if info is None:
        raise InconsistentMetadataError(Reject.SNAPSHOT_MISMATCH, "the timestamp names no snapshot")
    why = _matches(info, snapshot, sn.meta_signed.version)
    if why:
        raise InconsistentMetadataError(Reject.SNAPSHOT_MISMATCH, f"snapshot: {why} (per the timestamp)")
    return Publication(sn.meta_signed.dialect, sn, sn.meta_signed.version, ts.meta_signed.version)
