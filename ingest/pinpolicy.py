"""The log's pin policy: repository patterns whose first root must use given root keys.

Pins belong to the log, not to a command line (issue 8, finding 6): when they were a
per-command ``--pins`` option, one ``ingest`` without it admitted an attacker's
repository in a pinned namespace, and the Kafka ingest ignored the option altogether.
Now the policy is recorded in the log directory and every open of the log (every
command, the Kafka workers, replay, ``state --at``) folds with it; nobody can forget it.

``DIR/pins.jsonl`` holds one entry per change, each

* numbered (``version`` 1, 2, …) and chained to the one before (``prev``: SHA-256 of
  its canonical bytes), so an entry cannot be dropped, reordered or replaced unseen;
* bound to the log at the moment it was set (``offset`` and the Merkle ``root`` there);
* signed by the log key (the key that signs the log's checkpoints and snapshots), over
  the canonical MessagePack of the entry without its signature.

The only way to change it is an explicit step, :func:`set_policy` (``trustlog pins
set``), which also refuses a policy that contradicts the log: every repository already
created in a pinned namespace must have been created with root keys the new pins
allow. A policy therefore holds for the whole log, before and after the change, and a
replay from any point gives the same state. The latest entry is the policy in force.

Not defended here: whoever holds the log key (the log host) can rewrite this file and
the log together — the same boundary as for checkpoints; witnesses are the answer to
that (docs/SECURITY.md).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import msgspec

from trustlog.core.encoding import canonical_bytes
from trustlog.core.errors import InputError, LogError
from trustlog.core.keys import PublicKey, SigningKey, crypto_valid
from trustlog.core.names import is_pin_pattern
from trustlog.core.state import Pin, TrustState

POLICY_FILE = "pins.jsonl"
_HEX = frozenset("0123456789abcdef")


class PinPolicyError(InputError):
    """A pin policy that is malformed, contradicts the log, or differs from the one
    the log records."""


class PinPolicyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    prev: str                       # hex SHA-256 of the previous entry's signed bytes ("" for the first)
    pins: dict[str, list[str]]      # pattern -> sorted root key ids
    offset: int                     # the log's size when the policy was set
    root: str                       # hex Merkle root at ``offset``
    log_time: int
    keyid: str                      # the log key that signed
    sig: bytes = b""

    def signed_bytes(self) -> bytes:
        return canonical_bytes(msgspec.structs.replace(self, sig=b""))


def pins_mapping(pins: Iterable[Pin]) -> dict[str, list[str]]:
    return {p.pattern: sorted(p.keyids) for p in pins}


def pins_from_mapping(raw: dict[str, list[str]], where: str = "pin policy") -> tuple[Pin, ...]:
    """Validated pins: patterns of repository characters, lists of 64-hex root key ids."""
    out = []
    for pattern, ids in raw.items():
        if not is_pin_pattern(pattern):
            raise PinPolicyError(f"{where}: {pattern!r} is not a repository pattern (a-z 0-9 . _ - : / * ? [ ] !)")
        if not ids:
            raise PinPolicyError(f"{where}: the pin {pattern!r} lists no root key ids (it would allow nothing)")
        bad = [k for k in ids if len(k) != 64 or not set(k) <= _HEX]
        if bad:
            raise PinPolicyError(f"{where}: {bad[0]!r} under {pattern!r} is not a key id (64 lower-case hex)")
        out.append(Pin(pattern, frozenset(ids)))
    return tuple(out)


def same_pins(a: Iterable[Pin], b: Iterable[Pin]) -> bool:
    return pins_mapping(a) == pins_mapping(b)


def contradictions(pins: Iterable[Pin], state: TrustState) -> list[str]:
    """Repositories in ``state`` whose first root keys a pin of ``pins`` does not allow."""
    from trustlog.core.state import RejectedEventError, first_root_names, pinned_origin

    out = []
    pins = tuple(pins)
    for name, repo in state.repos.items():
        try:  # the fold's own rule, with the ids imported metadata names its keys by
            pinned_origin(pins, name, first_root_names(repo))
        except RejectedEventError as e:
            out.append(f"{name} (created with other root keys than the pin allows: {e.message})")
    return out


class PinPolicy:
    """The verified chain of pin-policy entries of one log directory."""

    def __init__(self, path: Path, entries: list[PinPolicyEntry]) -> None:
        self.path = path
        self.entries = entries

    @property
    def pins(self) -> tuple[Pin, ...]:
        """The policy in force (no pins when none was ever set: trust on first use)."""
        return pins_from_mapping(self.entries[-1].pins) if self.entries else ()

    @property
    def version(self) -> int:
        return self.entries[-1].version if self.entries else 0

    @classmethod
    def load(cls, directory: str | os.PathLike[str], log_key: PublicKey) -> PinPolicy:
        """Read and verify ``DIR/pins.jsonl``: numbering, chain, log key, signatures.
        Raises :class:`LogError` when any of it does not hold."""
        path = Path(directory) / POLICY_FILE
        entries: list[PinPolicyEntry] = []
        if not path.exists():
            return cls(path, entries)
        dec = msgspec.json.Decoder(PinPolicyEntry)
        prev = ""
        data = path.read_bytes()
        # a final line without its newline is a change that never completed (set_pins
        # returns only after the whole line is fsynced): it is ignored, and cut off by
        # the next change
        data = data[:data.rfind(b"\n") + 1]
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                e = dec.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as err:
                raise LogError(f"{where}: not a pin-policy entry ({err}); restore {POLICY_FILE} from a backup") from err
            if e.version != len(entries) + 1 or e.prev != prev:
                raise LogError(f"{where}: pin-policy entry {e.version} is out of order or not chained to the one "
                               f"before; {POLICY_FILE} was altered")
            if e.keyid != log_key.keyid or not crypto_valid(log_key.alg, log_key.public, e.signed_bytes(), e.sig):
                raise LogError(f"{where}: pin-policy entry {e.version} is not signed by this log's key; "
                               f"{POLICY_FILE} was altered")
            pins_from_mapping(e.pins, where)
            entries.append(e)
            prev = hashlib.sha256(e.signed_bytes()).hexdigest()
        return cls(path, entries)

    def append(self, pins: Iterable[Pin], *, key: SigningKey, offset: int, root: bytes, log_time: int) -> PinPolicyEntry:
        """Record a new policy, signed by the log ``key``; durable when this returns."""
        prev = hashlib.sha256(self.entries[-1].signed_bytes()).hexdigest() if self.entries else ""
        e = PinPolicyEntry(self.version + 1, prev, pins_mapping(pins), offset, root.hex(), log_time, key.keyid)
        e = msgspec.structs.replace(e, sig=key.sign(e.signed_bytes()))
        line = msgspec.json.encode(e) + b"\n"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            if size:
                os.lseek(fd, max(0, size - 4096), os.SEEK_SET)
                tail = os.read(fd, 4096)
                if not tail.endswith(b"\n"):         # cut off a torn change
                    keep = size - len(tail) + tail.rfind(b"\n") + 1
                    if tail.rfind(b"\n") < 0 and size > 4096:
                        raise LogError(f"{self.path}: the last line is torn and too long to repair")
                    os.ftruncate(fd, keep)
                    size = keep
            os.lseek(fd, size, os.SEEK_SET)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.entries.append(e)
        return e


__all__ = ["POLICY_FILE", "PinPolicy", "PinPolicyEntry", "PinPolicyError", "contradictions", "pins_from_mapping",
           "pins_mapping", "same_pins"]
