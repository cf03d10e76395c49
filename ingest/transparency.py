"""The log's own identity and its tamper evidence: the log key, the Merkle tree over the
records, signed checkpoints.

The log key (Ed25519) signs checkpoints and snapshots. By default it is ``DIR/log.key``
(PKCS#8 PEM, mode 0600), created on the first open of a log directory with
:class:`~trustlog.ingest.keystore.KeyStore`; ``DIR/log.pub`` is its public half. Anyone
who can write the log directory can then also re-sign a rewritten history, so an
operator should keep the key apart: ``TRUSTLOG_LOG_KEY=/elsewhere/NAME.key`` (a key made
with ``trustlog key generate NAME --keys /elsewhere``, passphrase-protected as any key:
``TRUSTLOG_LOG_PASSPHRASE``, ``TRUSTLOG_<NAME>_PASSPHRASE`` or ``TRUSTLOG_PASSPHRASE``).
A log key that sits inside the log directory is warned about (one line, once). Give
``log.pub`` to auditors (``trustlog log verify --log-key``, ``trustlog proof verify``).
The log's name in its checkpoints (``origin``, also the note key name) is ``trustlog/``
and the first 32 hex digits of the log key id.

``DIR/merkle/`` is a :class:`~trustlog.ingest.merkle_store.MerkleStore`: leaf ``i`` is
the RFC 9162 leaf hash of the body of record ``i`` of ``DIR/log`` exactly as stored.
Each newly signed checkpoint is also published to the places named in
``TRUSTLOG_PUBLISH`` (see :mod:`trustlog.ingest.witness`).
"""
from __future__ import annotations

import base64
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from trustlog.core.checkpoint import (
    Checkpoint, SignedCheckpoint, checkpoint_from_note, checkpoint_note, decode_checkpoint, is_legacy_body,
    log_verifier_key, sign_checkpoint, verify_checkpoint,
)
from trustlog.core.errors import InputError, LogError, SignatureError, TrustlogError
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core.merkle import CompactRange

from .keystore import KeyStore, PublicKeyFile
from .merkle_store import MerkleStore

LOG_KEY_NAME = "log"
LOG_KEY_ENV = "TRUSTLOG_LOG_KEY"
LOG_PASSPHRASE_ENV = "TRUSTLOG_LOG_PASSPHRASE"
log = logging.getLogger("trustlog.log")
_warned: set[str] = set()


def origin_for(key: PublicKey) -> str:
    return "trustlog/" + key.keyid[:32]


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("trustlog: warning: %s", message)


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
        return True
    except ValueError:
        return False


def load_or_create_log_key(directory: Path) -> SigningKey:
    """The log's signing key: the one named by ``TRUSTLOG_LOG_KEY`` (never created), else
    ``DIR/log.key``, created (unencrypted, mode 0600) on first use. A log key inside the
    log directory is warned about once."""
    external = os.environ.get(LOG_KEY_ENV)
    if external:
        return _load_external_log_key(directory, Path(external))
    ks = KeyStore(directory)
    priv, pub = directory / f"{LOG_KEY_NAME}.key", directory / f"{LOG_KEY_NAME}.pub"
    if not priv.exists():
        if pub.exists():
            raise LogError(f"{pub} exists but {priv.name} is missing: the log cannot sign checkpoints. "
                           f"Restore log.key, set {LOG_KEY_ENV} to where you keep it, or move log.pub away "
                           "to start a new log identity.")
        key = _create_log_key(directory)
    else:
        key = ks.load(LOG_KEY_NAME, os.environ.get(LOG_PASSPHRASE_ENV) or None, prompt=False)
        if not pub.exists():  # a crash between the two renames: the public half is derived data
            _write_public(pub, key)
        elif key.public_key != ks.public(str(pub)):
            raise LogError(f"{priv} and {pub} do not belong together")
    _warn_once(str(priv.resolve()), f"the log key {priv} sits inside the log directory: whoever can rewrite "
               f"the log can re-sign it; move it elsewhere and set {LOG_KEY_ENV} (docs/checkpoints.md)")
    return key


def _write_public(pub: Path, key: SigningKey) -> None:
    _write_atomically(pub, msgspec.json.encode(
        PublicKeyFile(LOG_KEY_NAME, key.keytype, key.keyid, key.public_key.public)) + b"\n", 0o644)


def _load_external_log_key(directory: Path, path: Path) -> SigningKey:
    """The log key kept outside the log directory (``TRUSTLOG_LOG_KEY``)."""
    if path.suffix != ".key" or not path.is_file():
        raise InputError(f"{LOG_KEY_ENV}={path}: no such key file (a NAME.key made by "
                         "`trustlog key generate NAME --keys DIR`)")
    key = KeyStore(path.parent).load(path.stem, os.environ.get(LOG_PASSPHRASE_ENV) or None, prompt=True)
    if key.keytype != "ed25519":
        raise InputError(f"{LOG_KEY_ENV}={path}: the log key must be Ed25519 (C2SP checkpoint notes), "
                         f"not {key.keytype}")
    pub = directory / f"{LOG_KEY_NAME}.pub"
    if not pub.exists():
        directory.mkdir(parents=True, exist_ok=True)
        _write_public(pub, key)
    elif key.public_key != KeyStore(directory).public(str(pub)):
        raise LogError(f"{LOG_KEY_ENV}={path} is not the key of this log ({pub} holds another): "
                       "a log keeps one identity")
    if _inside(path, directory):
        _warn_once(str(path.resolve()), f"{LOG_KEY_ENV}={path} sits inside the log directory {directory}: "
                   "keep the log key where the log host cannot rewrite it")
    elif (directory / f"{LOG_KEY_NAME}.key").exists():
        _warn_once(str(directory.resolve()), f"{directory / (LOG_KEY_NAME + '.key')} is a copy of the log key "
                   f"inside the log directory although {LOG_KEY_ENV} is set: delete it")
    return key


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _create_log_key(directory: Path) -> SigningKey:
    """A new Ed25519 log key: each file is written whole or not at all (a crash can leave
    the private key without its public half, which the next open rewrites)."""
    key = SigningKey.generate("ed25519")
    staging = directory / f".log-key.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        KeyStore(staging).save(LOG_KEY_NAME, key, None)
        for name in (f"{LOG_KEY_NAME}.key", f"{LOG_KEY_NAME}.pub"):
            fd = os.open(staging / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(staging / name, directory / name)
    except OSError as e:
        raise LogError(f"cannot create the log key in {directory}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # also after a failure (a full disk): no leftovers
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """A ``.pub`` file written by the key store (such as ``DIR/log.pub``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such public key file")
    return KeyStore(p.parent).public(str(p))


class LogTree:
    """The Merkle tree and checkpoints of one log directory, with its signing key."""

    def __init__(self, directory: Path, key: SigningKey | None, merkle: MerkleStore,
                 public_key: PublicKey | None = None) -> None:
        """``key`` is None for a read-only tree (it then has only ``public_key``)."""
        self.directory = directory
        self.key = key
        self.public_key = key.public_key if key is not None else public_key
        assert self.public_key is not None
        self.origin = origin_for(self.public_key)
        self.merkle = merkle
        self.notices: list[str] = []

    @classmethod
    def open(cls, directory: str | os.PathLike[str], key: SigningKey | None = None, *,
             read_only: bool = False) -> LogTree:
        """``read_only``: needs only ``log.pub``, writes nothing (repairs stay in memory)."""
        d = Path(directory)
        if read_only:
            pub = d / f"{LOG_KEY_NAME}.pub"
            if key is None and not pub.is_file():
                raise LogError(f"{pub} is missing: a read-only open cannot restore it; open the log for writing "
                               "once (or run `trustlog log repair`)")
            return cls(d, None, MerkleStore.open(d / "merkle", read_only=True),
                       public_key=key.public_key if key else load_public_key(pub))
        key = key or load_or_create_log_key(d)
        return cls(d, key, MerkleStore.open(d / "merkle"))

    @property
    def size(self) -> int:
        return self.merkle.size

    def latest(self) -> tuple[SignedCheckpoint, Checkpoint] | None:
        """The latest stored checkpoint, its signature checked with the log key."""
        signed = self.merkle.checkpoints.latest()
        if signed is None:
            return None
        try:
            return signed, verify_checkpoint(signed, self.public_key, origin=self.origin)
        except TrustlogError as e:
            raise LogError(f"{self.directory}/merkle: the latest checkpoint does not verify with the log key "
                           f"({e}); the checkpoints were altered — run `trustlog log verify`") from e

    def reconcile(self, log_size: int, leaves: Callable[[int], Iterable[bytes]] | None = None,
                  problem: str | None = None) -> int:
        """Bring the tree in line with a log of ``log_size`` records after an open.

        Leaves after the latest signed checkpoint are dropped (they are recomputed from
        the log, whose records past the checkpoint are then re-verified). Returns the
        number of leaves the checkpoint attests: records below it may be folded
        without re-verifying signatures, since their leaves are compared on the way.

        The level files are checked (:meth:`MerkleStore.check`; ``problem`` is one the
        caller found). When one is wrong and ``leaves(n)`` gives the leaf hashes of the
        first ``n`` records from the segments, the tree is rebuilt from them (a notice
        goes to :attr:`notices`) provided their root is the signed one; otherwise the
        segments themselves differ from what was signed, and this raises.
        """
        latest = self.latest()
        attested = 0
        if latest is not None:
            cp = latest[1]
            attested = cp.tree_size
            if cp.tree_size > log_size:
                raise LogError(
                    f"{self.directory}: checkpoint signed over {cp.tree_size} records but the log holds {log_size}: "
                    "records were lost or removed. Restore the log from a replica; run `trustlog log verify`."
                )
        if self.merkle.size > attested:
            self.merkle.truncate(attested)
        problems = [problem] if problem else self.merkle.check(attested)
        if not problems and latest is not None and self.merkle.root_at(attested) != latest[1].root_hash:
            problems = ["the stored tree's root is not the root of the latest signed checkpoint"]
        if problems:
            where = f"{self.directory}/merkle"
            if leaves is None:
                raise LogError(f"{where}: {'; '.join(problems)}; run `trustlog log verify`")
            hashes = list(leaves(attested))
            cr = CompactRange()
            for h in hashes:
                cr.append(h)
            if latest is not None and cr.root() != latest[1].root_hash:
                raise LogError(
                    f"{self.directory}/log: records [0, {attested}) do not hash to the root the latest checkpoint "
                    f"signed: the log itself was altered ({where}: {'; '.join(problems)}). Nothing was repaired; "
                    "run `trustlog log verify`.")
            self.merkle.rebuild(hashes)
            done = "rebuilt in memory (read-only; the next writer rebuilds it on disk)" if self.key is None \
                else "rebuilt from the segments"
            self.notices.append(f"{where}: {'; '.join(problems)}; {done}; the signed checkpoints match")
        else:
            if self.merkle.sums_problem:
                done = "rewritten" if self.key is not None else "the next writer rewrites it"
                self.notices.append(f"{self.directory}/merkle/{self.merkle.sums_problem}; the level files match "
                                    f"their children; {done}")
            if self.key is not None and attested:
                self.merkle.write_sums()
        return attested

    def append_leaf(self, leaf: bytes) -> None:
        self.merkle.append([leaf])

    def checkpoint(self, log_time: int, rejects: tuple[int, bytes] | None = None) -> SignedCheckpoint | None:
        """Sign and store a checkpoint of the whole tree, committing also to the
        rejects log's tree head ``rejects`` (size, root) when given; nothing if unchanged."""
        if self.key is None:
            raise LogError(f"{self.directory} is open read-only: no checkpoint can be signed")
        latest = self.merkle.checkpoints.latest_checkpoint()
        size = self.merkle.size
        rsize, rroot = rejects if rejects is not None else (0, b"")
        if latest is not None and latest.tree_size == size and (rejects is None or (
                latest.rejects_size, latest.rejects_root) == (rsize, rroot)):
            return None
        if latest is None and size == 0 and rsize == 0:
            return None
        cp = Checkpoint(self.origin, size, self.merkle.root(), max(log_time, 0), rejects_size=rsize, rejects_root=rroot)
        signed = sign_checkpoint(cp, self.key)
        self.merkle.add_checkpoint(signed)
        self.publish(signed)
        return signed

    def publish(self, signed: SignedCheckpoint) -> list[str]:
        """Hand a signed checkpoint to every place in ``TRUSTLOG_PUBLISH``. A place that
        fails is warned about and returned, never raised: the checkpoint is durable
        here, and the next one brings that place up to date (witnesses get a
        consistency proof from the size they last saw)."""
        if not os.environ.get("TRUSTLOG_PUBLISH", "").strip():
            return []
        from .witness import publish_everywhere

        failures = publish_everywhere(signed, self)
        for f in failures:
            log.warning("trustlog: warning: checkpoint of size %s not published: %s",
                        decode_checkpoint(signed.checkpoint).tree_size, f)
        return failures

    def close(self, flush: bool = True) -> None:
        self.merkle.close(fsync=flush and self.key is not None)


# -- JSON forms for files given to auditors --------------------------------------------


def checkpoint_to_json(signed: SignedCheckpoint, public_key: PublicKey | None = None) -> dict[str, Any]:
    """A signed checkpoint as JSON: the signed body bytes (base64) with a readable copy
    of its fields and, given the log key, its C2SP signed note (``note``) and the note
    verifier key (``vkey``). Verifiers check ``checkpoint`` and ignore the copy."""
    cp = decode_checkpoint(signed.checkpoint)
    out: dict[str, Any] = {
        "origin": cp.origin, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "log_time": cp.log_time,
        "rejects_size": cp.rejects_size, "rejects_root": cp.rejects_root.hex(),
        "keyid": signed.keyid, "sig": base64.b64encode(signed.sig).decode(),
        "checkpoint": base64.b64encode(signed.checkpoint).decode(),
        "format": "legacy-msgpack" if is_legacy_body(signed.checkpoint) else "c2sp-signed-note",
    }
    if cp.extensions:
        out["extensions"] = list(cp.extensions)
    if public_key is not None and not is_legacy_body(signed.checkpoint):
        out["note"] = checkpoint_note(signed, public_key).decode()
        out["vkey"] = log_verifier_key(cp.origin, public_key)
    return out


def checkpoint_from_json(data: bytes | str | dict[str, Any], key: PublicKey | None = None) -> SignedCheckpoint:
    """A checkpoint file: the JSON of :func:`checkpoint_to_json`, or (given the log
    key) a C2SP signed note as ``checkpoint latest --note`` writes it."""
    if not isinstance(data, dict):
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if not raw.lstrip().startswith(b"{"):
            if key is None:
                raise InputError("a checkpoint note is read with the log key (give --log-key)")
            try:
                return checkpoint_from_note(raw, key)[0]
            except TrustlogError as e:
                raise InputError(f"not a checkpoint note of this log: {e}") from e
    try:
        obj = data if isinstance(data, dict) else msgspec.json.decode(data)
        return SignedCheckpoint(base64.b64decode(obj["checkpoint"], validate=True), str(obj["keyid"]),
                                base64.b64decode(obj["sig"], validate=True))
    except (KeyError, TypeError, ValueError, msgspec.DecodeError) as e:
        raise InputError(f"not a signed checkpoint file (trustlog checkpoint latest --json): {e}") from e


def read_checkpoint_file(path: str | os.PathLike[str], key: PublicKey | None = None) -> SignedCheckpoint:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        return checkpoint_from_json(p.read_bytes(), key)
    except InputError as e:
        raise InputError(f"{p}: {e}") from e


def verify_checkpoint_json(data: bytes | str | dict[str, Any], key: PublicKey) -> Checkpoint:
    """Check a checkpoint file's signature (JSON or note); raises :class:`SignatureError`."""
    signed = checkpoint_from_json(data, key)
    cp = verify_checkpoint(signed, key)
    if cp.origin != origin_for(key):
        raise SignatureError(f"checkpoint names log {cp.origin!r}, not {origin_for(key)!r}")
    return cp
