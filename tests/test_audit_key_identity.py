"""The audit of a key covers every key id with the same key material (the same P-256
key under both labels here), as a compromise report does."""
from __future__ import annotations

from pathlib import Path

from trustlog.core.events import ImageSigned, RepoCreated, RoleKeysSet, sign_event
from trustlog.core.keys import SigningKey
from trustlog.ingest.pipeline import TrustLog
from trustlog.services.audit import audit_key

FAR = 4_000_000_000
REPO = "registry.example.com/audit/twins"


def test_audit_lists_what_every_form_of_the_key_signed(tmp_path: Path) -> None:
    root, targets, other = (SigningKey.from_seed(s) for s in (b"aud-root", b"aud-targets", b"aud-other"))
    raw = SigningKey.generate("ecdsa-p256")
    der = SigningKey("ecdsa-p256-der", raw.private)
    evs = [
        sign_event(RepoCreated(REPO, 1, 0, [root.public_key], 1, [targets.public_key], 1, FAR), [root]),
        sign_event(RoleKeysSet(REPO, 2, 0, "targets/ci", [raw.public_key, der.public_key, other.public_key], 1, FAR,
                               ["*"]), [targets]),
        sign_event(ImageSigned(REPO, 3, 0, "targets/ci", "a", "sha256:" + "aa" * 32, 1, FAR), [raw]),
        sign_event(ImageSigned(REPO, 4, 0, "targets/ci", "b", "sha256:" + "bb" * 32, 1, FAR), [der]),
        sign_event(ImageSigned(REPO, 5, 0, "targets/ci", "c", "sha256:" + "cc" * 32, 1, FAR), [raw, der]),
    ]
    with TrustLog(tmp_path, snapshot_every=None) as tl:
        assert tl.ingest((e.to_bytes(), None) for e in evs).accepted == len(evs)
        for k in (raw, der):
            report = audit_key(tl, k.keyid, ref_time=1_900_000_000)
            assert [e.offset for e in report.signed] == [2, 3, 4]
            assert [e.offset for e in report.granted] == [1]
            assert sorted(c.tag for c in report.verdict_changes) == ["a", "b", "c"]
