"""The key-compromise audit on a demo log: exactly what a key signed after `since`,
exactly what was signed under the delegations it made after `since`, and the current
verdicts a compromise report would change."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import msgspec
import pytest

from trustlog.cli.main import main as cli
from trustlog.core.events import ImageSigned, RoleKeysSet
from trustlog.core.keys import SigningKey
from trustlog.ingest.logindex import LogIndex
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.replay import decode_trusted
from trustlog.ingest.segment_log import SegmentLog
from trustlog.ingest.synthetic import FAR, SyntheticRegistry
from trustlog.services.audit import audit_key, audit_scan

REF = 1_900_000_000
HOTFIX = SigningKey.from_seed(b"audit-test/hotfix")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic registry; after the compromise point the targets key of repo 10
    keeps signing AND delegates a new signer, who signs too."""
    d = tmp_path_factory.mktemp("audit")
    reg = SyntheticRegistry(repos=32, tags=320, ref_time=REF)
    with TrustLog(d, checkpoint_every=200, snapshot_every=None) as tl:
        tl.ingest((e.to_bytes(), None) for e in reg.phase1())
        since = tl.clock.last + 1
        tl.ingest((e.to_bytes(), None) for e in reg.phase2(since))
        r = reg._repos[10]
        extra = [reg._sign(r, lambda v: RoleKeysSet(r.name, v, 0, "targets/hotfix", [HOTFIX.public_key], 1, FAR,
                                                   ["hotfix-*"]), [r.targets])]
        for i in range(3):
            extra.append(reg._sign(r, lambda v, i=i: ImageSigned(r.name, v, 0, "targets/hotfix", f"hotfix-{i}",
                                                                 "sha256:" + "5a" * 32, 1, FAR), [HOTFIX]))
        extra.append(reg._sign(r, lambda v: ImageSigned(r.name, v, 0, "targets", "v9.9.9", "sha256:" + "5b" * 32,
                                                        1, FAR), [r.targets]))
        res = tl.ingest((e.to_bytes(), None) for e in extra)
        assert res.accepted == len(extra)
    return d, reg, since, r


def _scan(d: Path):
    """Every record decoded: the test's own oracle, independent of the indexes."""
    log = SegmentLog.open(d / "log", create=False)
    try:
        for off, body in log.scan(0):
            rec, env, ev = decode_trusted(body)
            yield off, rec.log_time, env, ev
    finally:
        log.close()


def test_blast_radius_is_exact(demo) -> None:
    d, reg, since, r10 = demo
    k = r10.targets.keyid
    expected_signed_after, expected_delegated, expected_before = set(), set(), set()
    for off, t, env, ev in _scan(d):
        signed_by_k = any(s.keyid == k for s in env.signatures)
        if signed_by_k:
            (expected_signed_after if t >= since else expected_before).add(off)
        elif t >= since and ev.repo == r10.name and getattr(ev, "role", None) == "targets/hotfix":
            expected_delegated.add(off)
    assert expected_signed_after and expected_delegated and expected_before
    with TrustLog(d) as tl:
        rep = audit_key(tl, k, since, ref_time=REF)
    assert {e.offset for e in rep.signed_after} == expected_signed_after
    assert {e.offset for e in rep.delegated} == expected_delegated
    assert {e.offset for e in rep.signed_before} == expected_before
    assert rep.blast_offsets() == expected_signed_after | expected_delegated
    direct = [g for g in rep.fallen_grants if g.direct]
    assert [(g.repo, g.role) for g in direct] == [(r10.name, "targets/hotfix")]
    assert {e.kind for e in rep.granted} == {"RepoCreated"}
    # verdicts: what K signed after `since` and what the hotfix signer signed fall;
    # what K signed before, and the CI signer delegated before, stay
    changes = {(v.tag, v.before, v.after) for v in rep.verdict_changes}
    assert ("hotfix-0", "VALID", "DELEGATION_COMPROMISED") in changes
    assert ("v9.9.9", "VALID", "KEY_COMPROMISED") in changes
    changed_tags = {v.tag for v in rep.verdict_changes}
    with TrustLog(d) as tl:
        repo = tl.state.repos[r10.name]
        for tag, e in repo.tags.items():
            after = e.log_time >= since
            by_k = any(kid == k for kid, _ in e.signatures)
            should_fall = (by_k and after) or e.role == "targets/hotfix"
            assert (tag in changed_tags) == (should_fall and e.expires > REF), tag
    assert all(v.repo == r10.name for v in rep.verdict_changes)


def test_compromised_shared_ci_signer(demo) -> None:
    """A CI key shared by several repositories: exactly the events it signed after
    `since`, in every repository; it made no delegations."""
    d, reg, since, _ = demo
    ci = reg._ci[1]
    expected = {off for off, t, env, _ in _scan(d) if t >= since and any(s.keyid == ci.keyid for s in env.signatures)}
    assert expected
    with TrustLog(d) as tl:
        rep = audit_key(tl, ci.keyid, since, ref_time=REF)
    assert rep.blast_offsets() == expected
    assert not rep.delegated and not [g for g in rep.fallen_grants if g.direct]
    assert len(rep.repos) > 1
    assert rep.verdict_changes and {v.after for v in rep.verdict_changes} == {"KEY_COMPROMISED"}
    # the naive full scan agrees with the index, and reads the log while a writer holds it
    with TrustLog(d):
        scan = audit_scan(str(d), ci.keyid, since)
    assert [(o, a) for o, _, a in scan] == [(e.offset, e.after) for e in rep.signed]


def test_already_reported_key_changes_nothing(demo) -> None:
    d, reg, since, _ = demo
    with TrustLog(d) as tl:
        rep = audit_key(tl, reg.incidents.compromised_keyid, since, ref_time=REF)
        assert rep.signed_after and not rep.verdict_changes and rep.already_reported
        # reported later than it really was: the what-if moves it earlier
        earlier = audit_key(tl, reg.incidents.compromised_keyid, 0, ref_time=REF)
    assert earlier.verdict_changes
    assert {v.after for v in earlier.verdict_changes} == {"KEY_COMPROMISED"}


def test_index_survives_loss_and_is_rebuilt(demo, tmp_path: Path) -> None:
    d, reg, since, r10 = demo
    copy = tmp_path / "c"
    shutil.copytree(d, copy)
    k = r10.targets.keyid
    with TrustLog(copy) as tl:
        before = tl.index.key_postings(k), tl.index.repo_postings(r10.name)
    shutil.rmtree(copy / "index")
    with TrustLog(copy) as tl:
        assert tl.opened_with["indexed"] == tl.log.next_offset
        assert (tl.index.key_postings(k), tl.index.repo_postings(r10.name)) == before
    (copy / "index" / "heads.dat").write_bytes(b"garbage")
    with TrustLog(copy) as tl:
        assert (tl.index.key_postings(k), tl.index.repo_postings(r10.name)) == before
    idx = LogIndex.open(copy / "index")
    assert idx.covered == before[1][-1].offset + 1 or idx.covered > before[1][-1].offset
    idx.close()


def test_cli_audit_json_and_html(demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, reg, since, r10 = demo
    html = tmp_path / "report.html"
    rc = cli(["audit", "--log", str(d), "--key", r10.targets.keyid, "--since", str(since), "--json",
              "--html", str(html), "--ref-time", "2030-03-17T17:46:40Z"])
    assert rc == 0
    out = msgspec.json.decode(capsys.readouterr().out)
    assert out["summary"]["delegations_after"] == 1 and out["summary"]["delegated_events"] == 3
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "compromised since" in text
    # the one script element is the inert JSON evidence block (type application/json, never run)
    inert = re.sub(r'<script type="application/json" id="trustlog-evidence">[^<]*</script>', "", text)
    assert not re.search(r"<script|<link|<img|\bsrc=|\bhref=|@import|url\(", inert)
    assert set(re.findall(r"https?://[^\"' ]+", text)) <= {"http://www.w3.org/2000/svg"}
    rc = cli(["audit", "--log", str(d), "--key", r10.targets.keyid, "--since", str(since)])
    assert rc == 0 and "blast radius" in capsys.readouterr().out


def test_audit_reads_no_more_than_the_key_needs(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit answers from the index: it reads the records it reports, not the log."""
    d, reg, since, r10 = demo
    with TrustLog(d) as tl:
        reads = []
        real = tl.log.read
        monkeypatch.setattr(tl.log, "read", lambda off: reads.append(off) or real(off))
        monkeypatch.setattr(tl.log, "scan", lambda *a, **k: pytest.fail("the audit scanned the log"))
        rep = audit_key(tl, r10.targets.keyid, since, ref_time=REF)
    assert len(set(reads)) == len({e.offset for e in rep.signed + rep.granted + rep.delegated})
    assert len(reads) < tl.log.next_offset / 5


def test_commands_register_into_the_main_parser() -> None:
    """`register(sub, common)` adds the commands to `trustlog`'s own parser with no
    name clash (or finds them already wired there)."""
    import argparse

    from trustlog.cli import main as m
    from trustlog.cli.audit_cmds import register

    p = m.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    mine = {"checkpoint", "proof", "log", "snapshot", "state", "replay", "audit"}
    if not mine <= set(sub.choices):
        assert not mine & set(sub.choices)
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--json", action="store_true")
        common.add_argument("--log", default=".")
        common.add_argument("--keys", default=".")
        register(sub, common)
    args = p.parse_args(["audit", "--key", "ab" * 32, "--since", "2026-01-01T00:00:00Z", "--log", "/x"])
    assert args.func.__name__ == "cmd_audit" and args.log == "/x"
    args = p.parse_args(["log", "verify", "--log-key", "k.pub"])
    assert args.func.__name__ == "cmd_log_verify"


def test_index_chains_blocks_and_detects_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of one name chain across flushes; a lookup merges disk and buffer; a
    damaged block is an error, never a silently shorter answer."""
    import trustlog.ingest.logindex as li
    from trustlog.core.errors import LogError
    from trustlog.core.events import ImageSigned as IS

    monkeypatch.setattr(li, "FLUSH_ENTRIES", 3)
    idx = LogIndex.open(tmp_path)
    ev = IS("r.example/x", 1, 0, "targets", "t", "sha256:" + "0" * 64, 1, FAR)
    for off in range(10):
        idx.add_event(off, 1000 + off, ev, 1, [("k1", li.SIGNED)] if off % 2 else [])
        idx.flush()
    assert [p.offset for p in idx.key_postings("k1")] == [1, 3, 5, 7, 9]
    assert [p.offset for p in idx.repo_postings("r.example/x")] == list(range(10))
    idx.save_heads()
    idx.close()
    idx = LogIndex.open(tmp_path)
    assert idx.covered == 10 and [p.log_time for p in idx.key_postings("k1")] == [1001, 1003, 1005, 1007, 1009]
    idx.close()
    data = bytearray((tmp_path / li.POSTINGS_FILE).read_bytes())
    data[30] ^= 1
    (tmp_path / li.POSTINGS_FILE).write_bytes(bytes(data))
    idx = LogIndex.open(tmp_path, read_only=True)   # found on open: rebuilt in memory, the file kept
    assert "postings.dat" in idx.rebuilt_because and idx.covered == 0 and idx.repo_postings("r.example/x") == []
    idx.close()
    assert (tmp_path / li.POSTINGS_FILE).read_bytes() == bytes(data)
    idx = LogIndex.open(tmp_path)   # a writer rebuilds; damage that appears after open is an error
    for off in range(4):
        idx.add_event(off, 1000 + off, ev, 1, [])
    idx.save_heads()
    with open(tmp_path / li.POSTINGS_FILE, "r+b") as f:
        f.seek(4)
        f.write(b"\xff\xff\xff\xff")   # a block count far past the end: no MemoryError
    with pytest.raises(LogError, match="postings.dat"):
        idx.repo_postings("r.example/x")
    idx.close()
