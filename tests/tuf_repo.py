"""Real TUF repositories written with python-tuf (``tuf.api.metadata``) on disk, and the
trust decision ``tuf.ngclient.Updater`` makes per target, to compare trustlog with.

Imported lazily by the tests (python-tuf is a test dependency; under CI=true a test
that needs it fails when it is missing).
"""
from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Iterator

from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import DownloadHTTPError, RepositoryError
from tuf.api.metadata import (
    DelegatedRole, Delegations, Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater

TOP = ("root", "targets", "snapshot", "timestamp")
BASE_URL = "http://tuf.invalid/metadata/"


def future(days: int = 365) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


def past(days: int = 1) -> datetime:
    return (datetime.now(timezone.utc) - timedelta(days=days)).replace(microsecond=0)


def new_signer(keytype: str = "ed25519") -> CryptoSigner:
    return {"ed25519": CryptoSigner.generate_ed25519, "ecdsa": CryptoSigner.generate_ecdsa,
            "rsa": CryptoSigner.generate_rsa}[keytype]()


class TufRepo:
    """A python-tuf repository in ``directory`` (consistent_snapshot off, so the files
    are ``N.root.json``, ``timestamp.json``, ``snapshot.json``, ``ROLE.json``)."""

    def __init__(self, directory: Path, keytype: str = "ed25519", threshold: dict[str, int] | None = None,
                 nkeys: dict[str, int] | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keytype = keytype
        self.signers: dict[str, list[CryptoSigner]] = {}
        root = Root(expires=future(), consistent_snapshot=False)
        for role in TOP:
            n = (nkeys or {}).get(role, 1)
            self.signers[role] = [new_signer(keytype) for _ in range(n)]
            for s in self.signers[role]:
                root.add_key(s.public_key, role)
            root.roles[role].threshold = (threshold or {}).get(role, 1)
        self.root = Metadata(root)
        self.targets: dict[str, Metadata[Targets]] = {"targets": Metadata(Targets(expires=future()))}
        self.snapshot = Metadata(Snapshot(expires=future()))
        self.timestamp = Metadata(Timestamp(expires=future()))
        self.sign_with: dict[str, list[CryptoSigner] | None] = {}
        self.write_root()

    # -- root --------------------------------------------------------------------------

    def write_root(self, signers: list[CryptoSigner] | None = None) -> Path:
        self.root.signatures.clear()
        for s in signers if signers is not None else self.signers["root"]:
            self.root.sign(s, append=True)
        p = self.dir / f"{self.root.signed.version}.root.json"
        self.root.to_file(str(p), JSONSerializer(compact=True))
        shutil.copy(p, self.dir / "root.json")
        return p

    def rotate_root(self, new_root_keys: int = 1, threshold: int = 1, sign_old: bool = True, sign_new: bool = True,
                    rotate_targets: bool = False) -> None:
        """Next root version with new root keys (and optionally a new targets key)."""
        old = list(self.signers["root"])
        r = self.root.signed
        for s in old:
            r.revoke_key(s.public_key.keyid, "root")
        new = [new_signer(self.keytype) for _ in range(new_root_keys)]
        for s in new:
            r.add_key(s.public_key, "root")
        r.roles["root"].threshold = threshold
        if rotate_targets:
            for s in self.signers["targets"]:
                r.revoke_key(s.public_key.keyid, "targets")
            self.signers["targets"] = [new_signer(self.keytype)]
            r.add_key(self.signers["targets"][0].public_key, "targets")
        r.version += 1
        self.signers["root"] = new
        self.write_root((old if sign_old else []) + (new if sign_new else []))

    # -- targets and delegations ---------------------------------------------------------

    def add_target(self, path: str, data: bytes, role: str = "targets") -> None:
        self.targets[role].signed.targets[path] = TargetFile.from_data(path, data, ["sha256"])

    def remove_target(self, path: str, role: str = "targets") -> None:
        del self.targets[role].signed.targets[path]

    def delegate(self, name: str, paths: list[str] | None = None, parent: str = "targets", nkeys: int = 1,
                 threshold: int = 1, terminating: bool = False, hash_prefixes: list[str] | None = None) -> None:
        signers = [new_signer(self.keytype) for _ in range(nkeys)]
        self.signers[name] = signers
        pt = self.targets[parent].signed
        if pt.delegations is None:
            pt.delegations = Delegations(keys={}, roles={})
        role = DelegatedRole(name=name, keyids=[], threshold=threshold, terminating=terminating,
                             paths=paths, path_hash_prefixes=hash_prefixes)
        pt.delegations.roles[name] = role
        for s in signers:
            pt.add_key(s.public_key, name)
        self.targets[name] = Metadata(Targets(expires=future()))

    def undelegate(self, name: str, parent: str = "targets") -> None:
        pt = self.targets[parent].signed
        assert pt.delegations is not None and pt.delegations.roles is not None
        for kid in pt.delegations.roles[name].keyids:
            pt.revoke_key(kid, name)
        del pt.delegations.roles[name]

    def publish(self, roles: list[str] | None = None, expires: dict[str, datetime] | None = None) -> None:
        """Bump and sign ``roles`` (default: every targets role), then snapshot and timestamp."""
        for name in roles if roles is not None else list(self.targets):
            md = self.targets[name]
            md.signed.version += 1
            if expires and name in expires:
                md.signed.expires = expires[name]
            md.signatures.clear()
            for s in self.sign_with.get(name) or self.signers[name]:
                md.sign(s, append=True)
            md.to_file(str(self.dir / f"{name}.json"), JSONSerializer(compact=True))
        for name, md in self.targets.items():
            if (self.dir / f"{name}.json").exists():
                self.snapshot.signed.meta[f"{name}.json"] = MetaFile(version=md.signed.version)
        for role, md in (("snapshot", self.snapshot), ("timestamp", self.timestamp)):
            if role == "timestamp":
                md.signed.snapshot_meta = MetaFile(version=self.snapshot.signed.version)
            md.signed.version += 1
            if expires and role in expires:
                md.signed.expires = expires[role]
            md.signatures.clear()
            for s in self.signers[role]:
                md.sign(s, append=True)
            md.to_file(str(self.dir / f"{role}.json"), JSONSerializer(compact=True))

    def all_paths(self) -> set[str]:
        return {p for md in self.targets.values() for p in md.signed.targets}

    def digest(self, path: str) -> str | None:
        for md in self.targets.values():
            t = md.signed.targets.get(path)
            if t is not None:
                return "sha256:" + t.hashes["sha256"]
        return None


class _DirFetcher(FetcherInterface):
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _fetch(self, url: str) -> Iterator[bytes]:
        p = self.dir / url.removeprefix(BASE_URL)
        if not p.is_file():
            raise DownloadHTTPError(f"{url} not found", 404)
        return iter([p.read_bytes()])


def ngclient_decisions(repo_dir: Path, client_dir: Path, paths: set[str],
                       trusted_root: Path | None = None) -> dict[str, str | None]:
    """``path -> "sha256:<hex>"`` where tuf.ngclient trusts the target, None where it
    does not (any RepositoryError on the way counts as not trusted)."""
    client_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = None
    if not (client_dir / "root.json").exists():
        bootstrap = (trusted_root or repo_dir / "1.root.json").read_bytes()
    out: dict[str, str | None] = {}
    try:
        up = Updater(str(client_dir), BASE_URL, fetcher=_DirFetcher(repo_dir), bootstrap=bootstrap)
        up.refresh()
    except RepositoryError:
        return {p: None for p in paths}
    for p in paths:
        try:
            info = up.get_targetinfo(p)
        except RepositoryError:
            info = None
        out[p] = None if info is None else "sha256:" + info.hashes["sha256"]
    return out


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
