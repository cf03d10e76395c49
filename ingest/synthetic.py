"""A deterministic synthetic registry: the demo's and the benchmarks' event source.

It streams signed envelopes repository by repository (nothing is held for the whole
registry, so a million tags fit in memory), in two phases separated by a point in log
time: phase 2 signs more tags, and reports one shared CI signer key compromised since
the phase boundary. Woven in are the incidents an operator must see caught: a root
rotation, a targets rotation, a forged signature, a rollback attempt, a threshold
shortfall, a signer outside its patterns, a removed signer and expired signatures.

Deterministic: every key (Ed25519, ECDSA, RSA) is derived from ``seed`` and signs
deterministically (:mod:`trustlog.ingest.seeded_keys`), the claimed times are fixed and
the expired tags expire at a fixed point, so the same seed gives the same envelopes,
byte for byte (phase 2 given the same ``since``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated, Signature,
    sign_event,
)
from trustlog.core.keys import SigningKey

from .seeded_keys import seeded_key

FAR = 4_102_444_800          # 2100-01-01: expiry of healthy metadata (seconds)
EXPIRED = 1_700_100_000      # 2023-11-16: expiry of the expired tags (after their claimed signing times)
CI_POOL = 8                  # CI signer keys shared across repositories
COMPROMISED_CI = 0           # index of the CI key that will be reported compromised


@dataclass
class Incidents:
    """What the generator wove in, for the summary and for tests."""

    root_rotation: str = ""
    targets_rotation: str = ""
    forged_signature: str = ""
    rollback_attempt: str = ""
    threshold_shortfall: str = ""
    outside_patterns: str = ""
    removed_signer: str = ""
    compromised_keyid: str = ""
    compromised_repos: list[str] = field(default_factory=list)
    expected_rejects: dict[str, int] = field(default_factory=dict)


class _Repo:
    __slots__ = ("name", "idx", "version", "root", "targets", "has_ci", "has_release", "ci", "rel", "removed")

    def __init__(self, name: str, idx: int) -> None:
        self.name, self.idx, self.version = name, idx, 0
        self.removed = False


class SyntheticRegistry:
    def __init__(self, repos: int = 1000, tags: int = 20_000, *, seed: str = "trustlog-demo",
                 ref_time: int = 1_900_000_000, ecdsa_every: int = 10, rsa_every: int = 200) -> None:
        if repos < 8:
            raise ValueError("the synthetic registry needs at least 8 repositories for its incidents")
        self.n_repos = repos
        self.tags_per_repo = max(2, tags // repos)
        self.seed = seed
        self.ref_time = ref_time
        self.ecdsa_every = ecdsa_every
        self.rsa_every = rsa_every
        self.incidents = Incidents()
        self._ci = [self._key(f"ci/{i}") for i in range(CI_POOL)]
        self._rsa_pool: list[SigningKey] = []
        self.incidents.compromised_keyid = self._ci[COMPROMISED_CI].keyid
        self._repos: list[_Repo] = []

    # -- keys -------------------------------------------------------------------------

    def _key(self, name: str) -> SigningKey:
        return SigningKey.from_seed(f"{self.seed}/{name}".encode())

    def _targets_key(self, idx: int) -> SigningKey:
        if self.rsa_every and idx % self.rsa_every == 7:
            if not self._rsa_pool:  # a seeded prime search takes a while: a small shared pool
                self._rsa_pool = [seeded_key(f"{self.seed}/rsa/{i}".encode(), "rsa-pss-sha256") for i in range(2)]
            return self._rsa_pool[idx % 2]
        if self.ecdsa_every and idx % self.ecdsa_every == 3:
            return seeded_key(f"{self.seed}/{idx}/targets".encode(), "ecdsa-p256" if idx % 20 == 3 else "ecdsa-p256-der")
        return self._key(f"{idx}/targets")

    # -- events -------------------------------------------------------------------------

    def _sign(self, r: _Repo, event_fn, signers: list[SigningKey]) -> Envelope:
        r.version += 1
        return sign_event(event_fn(r.version), signers)

    def _tag_event(self, r: _Repo, i: int, phase: int) -> Envelope:
        tag = f"v1.{i}" if i % 3 == 0 else f"build-{i}"
        digest = "sha256:" + hashlib.sha256(f"{r.name}:{tag}:{phase}".encode()).hexdigest()
        expired_at = min(self.ref_time - 86_400, EXPIRED)  # fixed, unless ref_time is older still
        expires = expired_at if (r.idx * 31 + i) % 97 == 0 else FAR
        if r.has_release and tag.startswith("v"):
            role, signers = "targets/release", r.rel
        elif r.has_ci and not r.removed and tag.startswith("build-") and i % 4 != 0:
            role, signers = "targets/ci", [r.ci]
        else:
            role, signers = "targets", [r.targets]
        return self._sign(r, lambda v: ImageSigned(r.name, v, 1_700_000_000 + i, role, tag, digest,
                                                   1000 + i, expires), signers)

    def _phase1_repo(self, idx: int) -> Iterator[Envelope]:
        r = _Repo(f"registry.example.com/team{idx % 50}/app{idx}", idx)
        self._repos.append(r)
        r.root = self._key(f"{idx}/root")
        r.targets = self._targets_key(idx)
        r.has_ci = idx % 2 == 0
        r.has_release = idx % 5 == 1
        r.ci = self._ci[(idx // 2) % CI_POOL]
        r.rel = [self._key(f"{idx}/release/a"), self._key(f"{idx}/release/b")]
        yield self._sign(r, lambda v: RepoCreated(r.name, v, 1_700_000_000, [r.root.public_key], 1,
                                                   [r.targets.public_key], 1, FAR), [r.root])
        if r.has_ci:
            yield self._sign(r, lambda v: RoleKeysSet(r.name, v, 1_700_000_000, "targets/ci", [r.ci.public_key],
                                                      1, FAR, ["build-*"]), [r.targets])
        if r.has_release:
            yield self._sign(r, lambda v: RoleKeysSet(r.name, v, 1_700_000_000, "targets/release",
                                                      [k.public_key for k in r.rel], 2, FAR, ["v*"]), [r.targets])
        yield from self._incident(r)
        for i in range(self.tags_per_repo // 2):
            yield self._tag_event(r, i, 1)

    def _incident(self, r: _Repo) -> Iterator[Envelope]:
        inc = self.incidents
        if r.idx == 0:      # root rotation, signed by the old and the new root key
            new_root = self._key(f"{r.idx}/root2")
            yield self._sign(r, lambda v: RootRotated(r.name, v, 1_700_000_100, [new_root.public_key], 1, FAR),
                             [r.root, new_root])
            r.root = new_root
            inc.root_rotation = r.name
        elif r.idx == 2:    # targets rotation, signed by root
            new_t = self._key(f"{r.idx}/targets2")
            yield self._sign(r, lambda v: RoleKeysSet(r.name, v, 1_700_000_100, "targets", [new_t.public_key], 1,
                                                      FAR, []), [r.root])
            r.targets = new_t
            inc.targets_rotation = r.name
        elif r.idx == 4:    # a forged signature: valid event, signature bytes altered
            ev = ImageSigned(r.name, r.version + 1, 1_700_000_100, "targets", "forged", "sha256:" + "66" * 32, 1, FAR)
            good = sign_event(ev, [r.targets])
            sig = bytearray(good.signatures[0].sig)
            sig[10] ^= 0x40
            yield Envelope(good.payload, [Signature(r.targets.keyid, bytes(sig))])
            inc.forged_signature = r.name
            inc.expected_rejects["BAD_SIGNATURE"] = inc.expected_rejects.get("BAD_SIGNATURE", 0) + 1
        elif r.idx == 6:    # a rollback attempt: a validly signed binding below the tag's current version
            yield self._tag_event(r, 10_000, 1)  # tag build-10000, by targets, at r.version
            yield sign_event(ImageSigned(r.name, r.version - 1, 1_700_000_200, "targets", "build-10000",
                                         "sha256:" + "77" * 32, 1, FAR), [r.targets])
            inc.rollback_attempt = r.name
            inc.expected_rejects["VERSION_ROLLBACK"] = inc.expected_rejects.get("VERSION_ROLLBACK", 0) + 1
        elif r.idx == 1:    # threshold shortfall: release needs 2 of 2, one signs
            yield sign_event(ImageSigned(r.name, r.version + 1, 1_700_000_100, "targets/release", "v9.9",
                                         "sha256:" + "88" * 32, 1, FAR), r.rel[:1])
            inc.threshold_shortfall = r.name
            inc.expected_rejects["THRESHOLD_NOT_MET"] = inc.expected_rejects.get("THRESHOLD_NOT_MET", 0) + 1
        elif r.idx == 11:   # a delegated signer signing outside its patterns
            yield sign_event(ImageSigned(r.name, r.version + 1, 1_700_000_100, "targets/release", "latest",
                                         "sha256:" + "99" * 32, 1, FAR), r.rel)
            inc.outside_patterns = r.name
            inc.expected_rejects["OUTSIDE_PATTERNS"] = inc.expected_rejects.get("OUTSIDE_PATTERNS", 0) + 1

    def _phase2_repo(self, r: _Repo, since: int) -> Iterator[Envelope]:
        half = self.tags_per_repo // 2
        if r.idx == 8 and r.has_ci:   # a signer removed: its tags lose trust
            yield self._sign(r, lambda v: RoleRemoved(r.name, v, 1_700_000_300, "targets/ci"), [r.targets])
            r.removed = True
            self.incidents.removed_signer = r.name
        for i in range(half, self.tags_per_repo):
            yield self._tag_event(r, i, 2)
        if r.has_ci and r.ci is self._ci[COMPROMISED_CI]:
            yield self._sign(r, lambda v: KeyCompromised(r.name, v, 1_700_000_400, r.ci.keyid, since,
                                                         "CI signer key leaked"), [r.targets])
            self.incidents.compromised_repos.append(r.name)

    # -- public ------------------------------------------------------------------------

    def phase1(self) -> Iterator[Envelope]:
        for idx in range(self.n_repos):
            yield from self._phase1_repo(idx)

    def phase2(self, since: int) -> Iterator[Envelope]:
        """Events after the compromise point ``since`` (a log time, ns)."""
        for r in self._repos:
            yield from self._phase2_repo(r, since)

    @property
    def expected_tags(self) -> int:
        return self.n_repos * self.tags_per_repo
