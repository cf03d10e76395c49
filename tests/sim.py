"""The in-memory simulator of repositories' histories, for every kind of fold test.

Keys are deterministic (seeded), log time advances by 1,000 ns per event, and every
step returns either "OK" or the rejection reason, so a scenario reads as data. The
table-driven rule tests drive one repository through the event methods (``create``,
``sign_tag`` …); the property tests (``tests/histories.py``) drive several through
:meth:`Sim.propose`. Every submission is kept in :attr:`Sim.trace` (envelope, log time,
offset, outcome), so a history can be replayed through another fold or a real log.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from trustlog.core.evaluate import Request
from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated, Signature,
    TagDeleted, sign_event,
)
from trustlog.core.keys import SigningKey
from trustlog.core.state import RejectedEventError, TrustState, default_sigcheck
from trustlog.verifier.batch import BatchVerifier

FAR = 4_000_000_000  # expiry far in the future (seconds)
NOW = 1_900_000_000  # the verification runs' reference time
DIGEST = "sha256:" + "ab" * 32

_key_cache: dict[str, SigningKey] = {}


def key(name: str, keytype: str = "ed25519") -> SigningKey:
    """A deterministic key per name (ECDSA/RSA keys are generated once and reused)."""
    k = _key_cache.get(f"{keytype}/{name}")
    if k is None:
        k = SigningKey.from_seed(name.encode()) if keytype == "ed25519" else SigningKey.generate(keytype)
        _key_cache[f"{keytype}/{name}"] = k
    return k


@dataclass(frozen=True)
class Step:
    """One submission: the envelope, the log time and offset it was applied at, and the
    outcome ("OK" or the rejection reason). ``forged``: a signature was tampered with."""

    env: Envelope
    log_time: int
    offset: int
    outcome: str
    forged: bool = False


def forge(env: Envelope) -> Envelope:
    """``env`` with one bit of its first signature flipped."""
    s0 = env.signatures[0]
    bad = bytearray(s0.sig)
    bad[3] ^= 0x10
    return Envelope(env.payload, [Signature(s0.keyid, bytes(bad)), *env.signatures[1:]])


def _fooled(_k, _message: bytes, _signature: bytes) -> bool:
    return True


@dataclass
class Sim:
    repo: str = "registry.example.com/team/app"
    state: TrustState = field(default_factory=TrustState)
    version: int = 0
    offset: int = 0
    clock: int = 1_000_000
    last_reject: RejectedEventError | None = None
    sent: list[Envelope] = field(default_factory=list)  # every envelope submitted, in order (to replay one)
    crypto: Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]] | None = None
    # apply forged envelopes as if every signature verified (a tampered log that fooled the
    # fold), so the verifiers see bad signatures in the state
    trust_forged: bool = False
    trace: list[Step] = field(default_factory=list)

    def _sigcheck(self, k, message: bytes, signature: bytes) -> bool:
        if self.crypto is None:
            return default_sigcheck(k, message, signature)
        return self.crypto([(k.alg, k.public, message, signature)])[0] == 1

    def now(self) -> int:
        return self.clock

    def submit(self, env: Envelope, *, forged: bool = False) -> str:
        """Apply one envelope; "OK" or the rejection reason code."""
        self.clock += 1_000
        self.sent.append(env)
        check = _fooled if forged and self.trust_forged else self._sigcheck
        try:
            self.state.apply(env, log_time=self.clock, offset=self.offset, sigcheck=check)
        except RejectedEventError as e:
            self.last_reject = e
            self.trace.append(Step(env, self.clock, self.offset, e.reason, forged))
            return e.reason
        self.trace.append(Step(env, self.clock, self.offset, "OK", forged))
        self.offset += 1
        self.version += 1
        return "OK"

    def next_version(self, repo: str) -> int:
        """A version above every scope of ``repo`` (1 for a repository not yet created)."""
        r = self.state.repos.get(repo)
        return 1 if r is None else r.version + 1

    def propose(self, repo: str, make: Callable[[int], object], signers: list[SigningKey], *,
                forged: bool = False, version: int | None = None) -> str:
        """Sign ``make(version)`` (by default :meth:`next_version`) and submit it, with one
        signature tampered with when ``forged``."""
        env = sign_event(make(self.next_version(repo) if version is None else version), signers)
        forged = forged and bool(env.signatures)
        return self.submit(forge(env) if forged else env, forged=forged)

    def signed(self, event, signers: list[SigningKey]) -> Envelope:
        return sign_event(event, signers)

    def _v(self, version: int | None) -> int:
        return self.version + 1 if version is None else version

    # -- events -----------------------------------------------------------------------

    def create(self, root: list[SigningKey], targets: list[SigningKey], *, root_threshold: int = 1,
               targets_threshold: int = 1, signers: list[SigningKey] | None = None, expires: int = FAR) -> str:
        ev = RepoCreated(self.repo, 1, 0, [k.public_key for k in root], root_threshold,
                         [k.public_key for k in targets], targets_threshold, expires)
        return self.submit(self.signed(ev, root if signers is None else signers))

    def rotate_root(self, new: list[SigningKey], threshold: int, signers: list[SigningKey], *,
                    expires: int = FAR, version: int | None = None) -> str:
        ev = RootRotated(self.repo, self._v(version), 0, [k.public_key for k in new], threshold, expires)
        return self.submit(self.signed(ev, signers))

    def set_role(self, role: str, keys: list[SigningKey], signers: list[SigningKey], *, threshold: int = 1,
                 paths: list[str] | None = None, expires: int = FAR, version: int | None = None) -> str:
        if paths is None:
            paths = [] if role == "targets" else ["*"]
        ev = RoleKeysSet(self.repo, self._v(version), 0, role, [k.public_key for k in keys], threshold, expires, paths)
        return self.submit(self.signed(ev, signers))

    def remove_role(self, role: str, signers: list[SigningKey], *, version: int | None = None) -> str:
        return self.submit(self.signed(RoleRemoved(self.repo, self._v(version), 0, role), signers))

    def compromise(self, k: SigningKey, since: int, signers: list[SigningKey], *, version: int | None = None) -> str:
        return self.submit(self.signed(KeyCompromised(self.repo, self._v(version), 0, k.keyid, since), signers))

    def sign_tag(self, tag: str, signers: list[SigningKey], *, role: str = "targets", digest: str = DIGEST,
                 expires: int = FAR, version: int | None = None, issued_at: int = 0) -> str:
        ev = ImageSigned(self.repo, self._v(version), issued_at, role, tag, digest, 1234, expires)
        return self.submit(self.signed(ev, signers))

    def delete_tag(self, tag: str, signers: list[SigningKey], role: str = "targets", *,
                   version: int | None = None) -> str:
        return self.submit(self.signed(TagDeleted(self.repo, self._v(version), 0, role, tag), signers))

    def submit_tampered(self, env: Envelope) -> str:
        return self.submit(env)

    # -- verification -----------------------------------------------------------------

    def verify(self, tag: str, digest: str | None = None, *, ref_time: int = NOW, crypto=None) -> str:
        v = BatchVerifier(self.state, ref_time=ref_time, crypto=crypto or self.crypto)
        return v.verify_all([Request(self.repo, tag, digest)])[0].code


def flip_bit(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index % len(b)] ^= 0x01
    return bytes(b)


def resign(env: Envelope, payload: bytes) -> Envelope:
    """The same signatures over different payload bytes (tampering in transit)."""
    return Envelope(payload, [Signature(s.keyid, s.sig) for s in env.signatures])
