"""TUF repositories written with python-tuf, imported into trustlog: per target, the
trust decision must be the one ``tuf.ngclient.Updater`` makes, on both verifier
backends; tampering is refused with a named reason; the log re-verifies the
publisher's own signatures (``log verify``) and replays to the same state."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import pytest


GUN = "registry.example.com/tuf/app"


def _open(path: Path, crypto):
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES

    return TrustLog(path, crypto=crypto, max_event_bytes=IMPORT_MAX_EVENT_BYTES)


def _decisions(log, paths: set[str], backend: str) -> dict[str, str | None]:
    from trustlog.core.evaluate import Request
    from trustlog.verifier.batch import BatchVerifier

    v = BatchVerifier(log.state, engine=backend)
    out = {}
    for p, verdict in zip(sorted(paths), v.verify_all([Request(GUN, p) for p in sorted(paths)])):
        out[p] = verdict.digest if verdict.ok else None
    return out


def _import(log, repo_dir: Path):
    from trustlog.ingest.tuf_import import DirSource, import_repository

    return import_repository(log, GUN, DirSource(repo_dir))


# -- the scenario table: (name, keytype, build(repo) -> extra paths, reasons trustlog must name) --


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable
    keytype: str = "ed25519"
    reasons: frozenset[str] = frozenset()
    repo_kw: dict | None = None


def _basic(r, tr):
    r.add_target("app/v1", b"one")
    r.add_target("app/v2", b"two")
    r.publish()


def _threshold_met(r, tr):
    r.add_target("a", b"a")
    r.sign_with["targets"] = r.signers["targets"][:2]
    r.publish()


def _threshold_short(r, tr):
    r.add_target("a", b"a")
    r.sign_with["targets"] = r.signers["targets"][:1]
    r.publish()


def _same_key_twice(r, tr):
    # one key signing twice counts once
    r.add_target("a", b"a")
    r.sign_with["targets"] = [r.signers["targets"][0], r.signers["targets"][0]]
    r.publish()


def _rotation(r, tr):
    r.add_target("a", b"a")
    r.publish()
    r.rotate_root(new_root_keys=2, threshold=2, rotate_targets=True)
    r.publish()


def _rotation_old_missing(r, tr):
    r.add_target("a", b"a")
    r.rotate_root(sign_old=False, rotate_targets=True)
    r.publish()


def _rotation_new_missing(r, tr):
    r.add_target("a", b"a")
    r.rotate_root(sign_new=False, rotate_targets=True)
    r.publish()


def _delegations(r, tr):
    r.add_target("top", b"t")
    r.delegate("releases", paths=["app/*"])
    r.add_target("app/v1", b"r1", role="releases")
    r.add_target("other/v1", b"o1", role="releases")     # outside its paths: nobody trusts it
    r.delegate("ci", paths=["app/*", "ci/*"], parent="releases", threshold=2, nkeys=2)
    r.add_target("app/nightly", b"n", role="ci")
    r.add_target("ci/x", b"x", role="ci")                # outside the parent's paths
    r.delegate("hashed", hash_prefixes=["0", "1", "2", "3", "4", "5", "6", "7"])
    for i in range(6):
        r.add_target(f"h/{i}", bytes([i]), role="hashed")
    r.publish()


def _terminating(r, tr):
    r.delegate("first", paths=["*"], terminating=True)
    r.delegate("second", paths=["*"])
    r.add_target("shared", b"1", role="first")
    r.add_target("only-second", b"2", role="second")     # the search never gets there
    r.publish()


def _expired_targets(r, tr):
    r.add_target("a", b"a")
    r.publish(expires={"targets": tr.past()})


def _expired_delegation(r, tr):
    r.add_target("a", b"a")
    r.delegate("d", paths=["d/*"])
    r.add_target("d/1", b"1", role="d")
    r.publish(expires={"d": tr.past()})


def _expired_timestamp(r, tr):
    r.add_target("a", b"a")
    r.publish(expires={"timestamp": tr.past()})


def _removed_and_repointed(r, tr):
    r.add_target("a", b"a")
    r.add_target("b", b"b")
    r.delegate("d", paths=["d/*"])
    r.add_target("d/1", b"1", role="d")
    r.publish()
    r.remove_target("a")
    r.add_target("b", b"b2")
    r.undelegate("d")
    r.publish(roles=["targets"])


CASES = [
    Case("basic-ed25519", _basic),
    Case("basic-ecdsa", _basic, keytype="ecdsa"),
    Case("basic-rsa", _basic, keytype="rsa"),
    Case("threshold-2-of-3", _threshold_met, repo_kw={"threshold": {"targets": 2}, "nkeys": {"targets": 3}}),
    Case("threshold-short", _threshold_short, reasons=frozenset({"THRESHOLD_NOT_MET"}),
         repo_kw={"threshold": {"targets": 2}, "nkeys": {"targets": 3}}),
    Case("one-key-twice", _same_key_twice, reasons=frozenset({"THRESHOLD_NOT_MET"}),
         repo_kw={"threshold": {"targets": 2}, "nkeys": {"targets": 2}}),
    Case("root-rotation", _rotation),
    Case("rotation-without-old-root", _rotation_old_missing, reasons=frozenset({"ROOT_OLD_THRESHOLD"})),
    Case("rotation-without-new-root", _rotation_new_missing, reasons=frozenset({"ROOT_NEW_THRESHOLD"})),
    Case("delegations-with-paths", _delegations),
    Case("terminating-delegation", _terminating),
    Case("expired-targets", _expired_targets),
    Case("expired-delegation", _expired_delegation),
    Case("expired-timestamp", _expired_timestamp, reasons=frozenset({"METADATA_EXPIRED"})),
    Case("removed-repointed-undelegated", _removed_and_repointed),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_decision_as_ngclient(case: Case, tr, tmp_path: Path, crypto) -> None:
    repo = tr.TufRepo(tmp_path / "repo", keytype=case.keytype, **(case.repo_kw or {}))
    paths: set[str] = set()
    orig_add = repo.add_target

    def add(path, data, role="targets"):
        paths.add(path)
        orig_add(path, data, role)

    repo.add_target = add
    case.build(repo, tr)
    expected = tr.ngclient_decisions(repo.dir, tmp_path / "client", paths)
    with _open(tmp_path / "log", crypto) as log:
        res = _import(log, repo.dir)
        got = _decisions(log, paths, crypto.backend)
    assert got == expected, (res.rejects, got, expected)
    assert set(res.reasons) == set(case.reasons), res.rejects
    assert any(v is not None for v in expected.values()) or case.reasons or case.name.startswith("expired")


def test_reimport_is_idempotent_and_follows_new_versions(tr, tmp_path: Path, crypto) -> None:
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("a", b"a")
    repo.publish()
    with _open(tmp_path / "log", crypto) as log:
        first = _import(log, repo.dir)
        n = log.log.next_offset
        again = _import(log, repo.dir)
        assert (first.appended, again.appended, again.unchanged, log.log.next_offset) == (2, 0, 1, n)
        repo.add_target("b", b"b")
        repo.publish()
        later = _import(log, repo.dir)
        assert later.appended == 1
        assert _decisions(log, {"a", "b"}, crypto.backend) == tr.ngclient_decisions(repo.dir, tmp_path / "c", {"a", "b"})


def test_rollback_is_refused_and_ngclient_refuses_it_too(tr, tmp_path: Path, crypto) -> None:
    import shutil

    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("a", b"a1")
    repo.publish()
    old = tmp_path / "old"
    shutil.copytree(repo.dir, old)
    repo.add_target("a", b"a2")
    repo.publish()
    client = tmp_path / "client"
    new_view = tr.ngclient_decisions(repo.dir, client, {"a"})
    with _open(tmp_path / "log", crypto) as log:
        _import(log, repo.dir)
        res = _import(log, old)            # the server now serves the older files
        assert res.reasons == {"VERSION_ROLLBACK": 1}, res.rejects
        assert _decisions(log, {"a"}, crypto.backend) == new_view == {"a": tr.sha256(b"a2")}
    assert tr.ngclient_decisions(old, client, {"a"}) == {"a": None}   # ngclient: rollback error


@pytest.mark.parametrize("tamper,reason", [
    ("flip-signature", "BAD_SIGNATURE"),
    ("edit-signed", "BAD_SIGNATURE"),
    ("not-in-snapshot", "SNAPSHOT_MISMATCH"),
])
def test_tampered_targets_refused_with_reason(tr, tmp_path: Path, crypto, tamper: str, reason: str) -> None:
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("a", b"a")
    repo.publish()
    p = repo.dir / "targets.json"
    doc = json.loads(p.read_bytes())
    if tamper == "flip-signature":
        sig = bytearray.fromhex(doc["signatures"][0]["sig"])
        sig[5] ^= 1
        doc["signatures"][0]["sig"] = sig.hex()
    elif tamper == "edit-signed":
        doc["signed"]["targets"]["a"]["length"] = 2
    else:
        doc["signed"]["version"] += 1
    p.write_text(json.dumps(doc))
    with _open(tmp_path / "log", crypto) as log:
        res = _import(log, repo.dir)
        assert res.reasons == {reason: 1}, res.rejects
        assert _decisions(log, {"a"}, crypto.backend) == {"a": None}
        assert sum(1 for _ in log.rejects) == 1


def test_log_verify_and_replay_reverify_publisher_signatures(tr, tmp_path: Path, crypto) -> None:
    from trustlog.ingest.logcheck import verify_log

    repo = tr.TufRepo(tmp_path / "repo", keytype="ecdsa")
    _delegations(repo, tr)
    repo.rotate_root(rotate_targets=True)
    repo.publish()
    paths = repo.all_paths()
    with _open(tmp_path / "log", crypto) as log:
        _import(log, repo.dir)
        before = _decisions(log, paths, crypto.backend)
        n = log.log.next_offset
        mid = log.state_at(offset=1)                  # state --at: only the first root folded
        assert mid.repos[GUN].tuf.root_version == 1 and not mid.repos[GUN].tags
        assert log.state.repos[GUN].tuf.root_version == 2
    report = verify_log(tmp_path / "log")
    assert report.ok, report
    with _open(tmp_path / "log", crypto) as log:   # reopened: the fold is replayed
        assert log.log.next_offset == n
        assert _decisions(log, paths, crypto.backend) == before
    assert before == tr.ngclient_decisions(repo.dir, tmp_path / "client", paths)


def test_compromise_report_and_audit_on_imported_data(tr, tmp_path: Path, crypto) -> None:
    """A delegated TUF signer's key reported compromised (a native KeyCompromised, signed
    by the publisher's targets key): what it signed after `since` falls, the audit
    names it, and the index knows which key signed which imported file."""
    from trustlog.core.events import Envelope, KeyCompromised, Signature, encode_event
    from trustlog.services.audit import audit_key

    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("stable", b"s")
    repo.delegate("ci", paths=["ci-*"])
    repo.add_target("ci-1", b"1", role="ci")
    repo.publish()
    with _open(tmp_path / "log", crypto) as log:
        _import(log, repo.dir)
        since = log.clock.last + 1
        repo.add_target("ci-2", b"2", role="ci")
        repo.publish(roles=["ci"])
        _import(log, repo.dir)
        st = log.state.repos[GUN]
        ci_key = st.grants[st.roles["ci"]].keyids[0]
        targets_signer = repo.signers["targets"][0]
        tl_targets = st.grants[st.roles["targets"]].keyids[0]
        rep = audit_key(log, ci_key, since)          # what if it were compromised since then?
        assert len(rep.signed_before) == 1 and len(rep.signed_after) == 1, rep.signed   # ci.json v2, then v3
        assert {c.tag for c in rep.verdict_changes} == {"ci-1", "ci-2"}
        ev = KeyCompromised(GUN, st.version + 1, 0, ci_key, since)
        payload = encode_event(ev)
        sig = bytes.fromhex(targets_signer.sign(payload).signature)
        r = log.ingest_batch([(Envelope(payload, [Signature(tl_targets, sig)]).to_bytes(), None)])
        assert r.accepted == 1, r.last_reject
        from trustlog.core.evaluate import Request
        from trustlog.verifier.batch import BatchVerifier

        v = {x.tag: x.code for x in BatchVerifier(log.state, engine=crypto.backend).verify_all(
            [Request(GUN, t) for t in ("stable", "ci-1", "ci-2")])}
        # ci.json was re-signed after `since`: everything it now lists falls (TUF judges a
        # role by its current metadata); targets' own tag stands
        assert v == {"stable": "VALID", "ci-1": "KEY_COMPROMISED", "ci-2": "KEY_COMPROMISED"}


def test_state_snapshot_keeps_imported_state(tr, tmp_path: Path, crypto) -> None:
    """A signed state snapshot carries the imported metadata state: reopened from it,
    the verdicts are the same and the next publish folds on top."""
    repo = tr.TufRepo(tmp_path / "repo")
    _delegations(repo, tr)
    paths = repo.all_paths()
    with _open(tmp_path / "log", crypto) as log:
        _import(log, repo.dir)
        before = _decisions(log, paths, crypto.backend)
        log.snapshot()
    with _open(tmp_path / "log", crypto) as log:
        assert log.snapshot_used == log.log.next_offset
        assert _decisions(log, paths, crypto.backend) == before
        repo.add_target("app/v2", b"r2", role="releases")
        paths.add("app/v2")
        repo.publish(roles=["releases"])
        assert _import(log, repo.dir).appended == 1
        assert _decisions(log, paths, crypto.backend) == tr.ngclient_decisions(repo.dir, tmp_path / "c", paths)
