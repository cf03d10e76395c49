"""Whatever the fold accepts, every stage after it handles — the stages built later.

tests/test_names.py feeds names the fold accepts through append, reopen, both engines,
inspect, state --at, snapshot create, audit, verify and log verify. This file takes the
same names (and imported TUF metadata, whose target paths and role names have a grammar
of their own, ``core.names.is_target_path`` / ``is_imported_role``) through the stages
written after it: the read-only view and its snapshot index, ``trustlog serve`` (GET
with raw and percent-encoded names, POST /v1/verify, the Gatekeeper external data
endpoint), Kafka partitioning, the sweep's GUN mapping, ``trustlog rejects``, the audit
HTML report and ``proof verify REPORT.html``; and checks that untrusted strings that the
fold *refuses* reach no terminal as control sequences.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from yarl import URL

from sim import FAR, key
from test_names import DIGEST, LONG_REPO, LONG_ROLE, LONG_TAG, accepted_history, patterns, repos, roles, tags
from trustlog.cli.main import main
from trustlog.core import names
from trustlog.core.events import ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, sign_event
from trustlog.ingest.partitioning import partition_for
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.view import LogView
from trustlog.services.sweep import gun_for

R, T, A = key("stages-root"), key("stages-targets"), key("stages-alice")
# what an attacker puts in the names of events the fold refuses: terminal control
# (colour, an OSC 8 link, a bell), rich markup, a bidi override, a forged second line
NASTY = "evil\x1b[31m\x1b]8;;http://x\x07[/][conceal]\u202e\r\nOK"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _no_control(s: str) -> None:
    assert not any(c in s for c in "\x1b\x07\r\u202e"), repr(s)


def _pct(s: str) -> str:
    """Every byte percent-encoded (what a cautious client sends)."""
    return "".join(f"%{b:02X}" for b in s.encode())


async def _serve(log_dir: Path, repo: str, tag: str, extra_keys: list[str] = ()) -> dict:
    """The real aiohttp application of `trustlog serve`, in process: every way to ask."""
    from aiohttp.test_utils import TestClient, TestServer

    from trustlog.services.http import make_app
    from trustlog.services.verdicts import VerdictService

    service = VerdictService(str(log_dir))
    out: dict = {}
    try:
        async with TestClient(TestServer(make_app(service))) as c:
            gets = {"raw": f"/v1/repositories/{repo}/tags/{_pct(tag) if '/' in tag else tag}",
                    "encoded": f"/v1/repositories/{_pct(repo)}/tags/{_pct(tag)}",
                    "digest": f"/v1/repositories/{repo}/tags/{_pct(tag)}?digest={DIGEST}"}
            for name, path in gets.items():
                r = await c.get(URL(path, encoded=True))
                out[name] = (r.status, await r.json())
            r = await c.post("/v1/verify", json={"requests": [{"repo": repo, "tag": tag}]})
            out["verify"] = (r.status, await r.json())
            keys = [f"{repo}:{tag}", *extra_keys]
            r = await c.post("/v1/externaldata", json={"apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                                                       "kind": "ProviderRequest", "request": {"keys": keys}})
            out["externaldata"] = (r.status, await r.json())
    finally:
        service.close()
    return out


def _check_views(d: Path, repo: str) -> None:
    """The read-only view — whole, and of one repository through the snapshot index —
    holds exactly the writer's fold of the repository."""
    with TrustLog(d) as tl:
        want = tl.state.repos[repo]
        with LogView(d) as whole, LogView(d, repos=[repo]) as one:
            assert one.snapshot_used is not None, one.snapshots_skipped
            assert whole.state.repos[repo] == want
            assert one.state.repos == {repo: want}
            assert one.version == whole.version == tl.state.version


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(repo=LONG_REPO, tag=LONG_TAG, role=LONG_ROLE, pattern="*" * 255)
@example(repo="a.b-c_d:65535/tags/e", tag="_", role="targets/A.-_", pattern="[!]")
@given(repo=repos, tag=tags, role=roles, pattern=patterns)
def test_later_stages_accept_what_the_fold_accepts(repo: str, tag: str, role: str, pattern: str) -> None:
    envs = accepted_history(repo, tag, role, pattern, (R, T, A), targets_tag=False)
    refused = [  # kept in the rejects log, never shown raw
        sign_event(RepoCreated(NASTY, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R]),
        sign_event(ImageSigned(repo, 3, 0, "targets", tag, DIGEST, 1, FAR), [T]),  # not above the tag's 3
    ]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "log"
        base = ("--log", str(d), "--keys", str(Path(tmp) / "keys"))
        with TrustLog(d, snapshot_every=2, checkpoint_every=2) as tl:
            assert tl.ingest_batch([(e.to_bytes(), None) for e in envs]).accepted == len(envs)
            assert tl.ingest_batch([(e.to_bytes(), None) for e in refused]).rejected == len(refused)
        assert _run("snapshot", "create", *base)[0] == 0
        _check_views(d, repo)
        # trustlog serve: raw and percent-encoded paths, a digest, the batch and the Gatekeeper endpoints
        got = asyncio.run(_serve(d, repo, tag))
        for how in ("raw", "encoded", "digest"):
            status, v = got[how]
            assert (status, v["code"], v["repo"], v["tag"]) == (200, "VALID", repo, tag), (how, v)
        assert [v["code"] for v in got["verify"][1]["verdicts"]] == ["VALID"]
        (item,) = got["externaldata"][1]["response"]["items"]
        assert item["value"]["code"] == "VALID" and "error" not in item, item
        # Kafka: the producer's partitioner (kafka-python's) and the ownership check agree
        from kafka.partitioner.default import murmur2

        for n in (1, 2, 6, 8, 97):
            assert partition_for(repo, n) == (murmur2(repo.encode()) & 0x7FFFFFFF) % n
        # the sweep's mapping of a registry repository under a GUN prefix
        host, _, rest = repo.partition("/")
        assert gun_for("", repo) == repo and (not rest or gun_for(host, rest) == repo)
        # trustlog rejects: the refused names are shown escaped, the JSON keeps them exact
        rc, out, _ = _run("rejects", *base)
        assert rc == 0 and "VERSION_" in out and "INVALID_FIELD" in out  # VERSION_ROLLBACK, wrapped in its column
        _no_control(out)
        rc, out, _ = _run("rejects", *base, "--json")
        assert rc == 0
        assert sorted(r["repo"] for r in json.loads(out)["rejects"]) == sorted([NASTY, repo])
        assert {r["reason"] for r in json.loads(out)["rejects"]} == {"INVALID_FIELD", "VERSION_ROLLBACK"}
        # the audit report and its offline check
        report = Path(tmp) / "a.html"
        assert _run("audit", *base, "--key", A.keyid, "--html", str(report))[0] == 0
        assert _run("proof", "verify", str(report), "--log-key", str(d / "log.pub"))[0] == 0


# -- imported TUF metadata through the same stages ----------------------------------------

GUN = "registry.example.com/imported/app"


def _import(d: Path, repo_dir: Path):
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES, DirSource, import_repository

    with TrustLog(d, max_event_bytes=IMPORT_MAX_EVENT_BYTES) as tl:
        return import_repository(tl, GUN, DirSource(repo_dir))


def test_imported_metadata_through_every_stage(tr, tmp_path: Path) -> None:
    """An imported repository with a delegated role and slashed target paths: view,
    snapshot index, serve (a slash in a tag is sent as %2F), audit report and proof,
    rejects — the same answers as the fold."""
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("v1", b"one")
    repo.delegate("releases", paths=["app/*"])
    repo.add_target("app/v2", b"two", role="releases")
    repo.publish()
    d = tmp_path / "log"
    assert _import(d, repo.dir).rejected == 0
    base = ("--log", str(d), "--keys", str(tmp_path / "keys"))
    assert _run("snapshot", "create", *base)[0] == 0
    _check_views(d, GUN)
    for tag in ("v1", "app/v2"):
        got = asyncio.run(_serve(d, GUN, tag, extra_keys=[f"{GUN}:v1"]))
        for how in ("raw", "encoded"):
            status, v = got[how]
            assert (status, v["code"], v["tag"]) == (200, "VALID", tag), (how, v)
        assert [v["code"] for v in got["verify"][1]["verdicts"]] == ["VALID"]
        items = got["externaldata"][1]["response"]["items"]
        # an image reference has no slash in its tag: repo:app/v2 is not one, and is
        # refused (fail closed), never read as another repository's tag
        assert items[-1]["value"]["code"] == "VALID"
        assert ("error" in items[0]) == ("/" in tag)
    with TrustLog(d) as tl:
        st = tl.state.repos[GUN]
        releases_key = tl.state.repos[GUN].grants[st.roles["releases"]].keyids[0]
    report = tmp_path / "a.html"
    assert _run("audit", *base, "--key", releases_key, "--html", str(report))[0] == 0
    assert _run("proof", "verify", str(report), "--log-key", str(d / "log.pub"))[0] == 0
    assert _run("log", "verify", *base)[0] == 0
    for argv in (("inspect", GUN), ("inspect", "--json", GUN), ("state", "--at", "3", GUN)):
        rc, out, err = _run(*argv, *base)
        assert rc == 0 and "app/v2" in out, (argv, err)
    rc, _, err = _run("verify", *base, "--fail-on-reject", "-o", str(tmp_path / "v.jsonl"))
    assert rc == 0, err


@pytest.mark.parametrize("what,name", [
    ("target", "bad\x1b[31m"), ("target", "a/../b"), ("target", ".hidden"), ("target", "a b"),
    ("target", "x[/]"), ("target", "t" * 256), ("role", "rel\u202eeases"), ("role", "rel eases"), ("role", "x:y"),
])
def test_imported_names_outside_the_grammar_are_refused(what: str, name: str, tr, tmp_path: Path) -> None:
    """A target path or delegated role name outside ``core.names`` is refused at the
    fold (the file is kept in the rejects log with its reason), so no later stage sees
    it; `trustlog rejects` shows the reason without terminal control."""
    assert not (names.is_target_path(name) if what == "target" else names.is_imported_role(name))
    repo = tr.TufRepo(tmp_path / "repo")
    if what == "target":
        repo.add_target(name, b"x")
    else:
        repo.delegate(name, paths=["*"])
    repo.publish()
    res = _import(tmp_path / "log", repo.dir)
    assert res.reasons == {"INVALID_FIELD" if what == "target" else "INVALID_ROLE": 1}, res.rejects
    rc, out, _ = _run("rejects", "--log", str(tmp_path / "log"))
    assert rc == 0
    _no_control(out)


def test_imported_first_root_and_the_logs_pin_policy(tr, tmp_path: Path) -> None:
    """The log's pin policy binds an imported first root by the one rule of native
    creations (state.pinned_origin): every matching pin must name every root key, by
    its trustlog or its TUF key id; and `pins set` judges the repositories already
    imported by the same rule (it named TUF ids a contradiction before)."""
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("v1", b"one")
    repo.publish()
    tuf_id = repo.signers["root"][0].public_key.keyid
    other = "00" * 32
    rows = [  # (pins, expected reasons, origin)
        ({"registry.example.com/*": [tuf_id]}, {}, "pinned"),
        ({"registry.example.com/*": [other]}, {"PIN_MISMATCH": 1}, None),
        # a broad pin that holds does not let a narrower one that does not be bypassed
        ({"registry.example.com/*": [tuf_id], "registry.example.com/imported/*": [other]}, {"PIN_MISMATCH": 1}, None),
        ({"other.example.com/*": [other]}, {}, "tofu"),
    ]
    for i, (pins, reasons, origin) in enumerate(rows):
        d = tmp_path / f"log{i}"
        pf = tmp_path / f"pins{i}.json"
        pf.write_text(json.dumps(pins))
        TrustLog(d).close()  # a new, empty log
        assert _run("pins", "set", "--log", str(d), str(pf))[0] == 0
        res = _import(d, repo.dir)
        assert dict(res.reasons) == reasons, (pins, res.rejects)
        with TrustLog(d) as tl:
            got = tl.state.repos.get(GUN)
            assert (got.origin if got else None) == origin
        with LogView(d) as v:  # every reader folds with the log's pins, and agrees
            assert (v.state.repos[GUN].origin if GUN in v.state.repos else None) == origin
    # `trustlog import` into a log with a pin policy (it passed "no pins", which the log refused)
    d = tmp_path / "cli"
    TrustLog(d).close()
    (tmp_path / "cli.json").write_text(json.dumps({"registry.example.com/*": [tuf_id]}))
    assert _run("pins", "set", "--log", str(d), str(tmp_path / "cli.json"))[0] == 0
    rc, _, err = _run("import", "tuf", str(repo.dir), "--repo", GUN, "--log", str(d))
    assert rc == 0, err
    # pins set after the import: the TUF id is accepted, another key refused
    d = tmp_path / "later"
    assert _import(d, repo.dir).rejected == 0
    for pins, rc in (({GUN: [tuf_id]}, 0), ({GUN: [other]}, 2)):
        pf = tmp_path / "later.json"
        pf.write_text(json.dumps(pins))
        assert _run("pins", "set", "--log", str(d), str(pf))[0] == rc, pins
    with TrustLog(d) as tl:
        assert tl.state.repos[GUN].origin == "pinned"


# -- the log's pin policy, as every reader folds it ------------------------------------------

def test_every_reader_folds_with_the_writers_pins(tmp_path: Path) -> None:
    """Pins are part of the log: the view, serve, verify, replay verify, inspect and log
    verify all report the repository as the writer folded it ("pinned"), with no pins
    given; a directory whose pin policy cannot be checked (log.pub gone) is refused, not
    folded without its pins."""
    from trustlog.core.state import Pin
    from trustlog.core.errors import LogError
    from trustlog.services.verdicts import VerdictService
    from trustlog.ingest.view import ViewSet

    repo, tag = "registry.example.com/pinned/app", "v1"
    d = tmp_path / "log"
    with TrustLog(d, snapshot_every=2) as tl:
        tl.set_pins([Pin("registry.example.com/pinned/*", frozenset({R.keyid}))])
        envs = [sign_event(RepoCreated(repo, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R]),
                sign_event(ImageSigned(repo, 2, 0, "targets", tag, DIGEST, 1, FAR), [T])]
        assert tl.ingest_batch([(e.to_bytes(), None) for e in envs]).accepted == 2
        assert tl.state.repos[repo].origin == "pinned"
    base = ("--log", str(d), "--keys", str(tmp_path / "keys"))
    assert _run("snapshot", "create", *base)[0] == 0
    with LogView(d) as v, LogView(d, repos=[repo]) as one, ViewSet(d) as vs:
        assert v.state.repos[repo].origin == one.state.repos[repo].origin == vs.state.repos[repo].origin == "pinned"
    service = VerdictService(str(d))
    try:
        from trustlog.core.evaluate import Request

        (verdict,) = service.verify([Request(repo, tag)])
        assert (verdict.code, verdict.root_trust) == ("VALID", "pinned")
    finally:
        service.close()
    reqs = tmp_path / "r.jsonl"
    reqs.write_text(json.dumps({"repo": repo, "tag": tag}) + "\n")
    out = tmp_path / "v.jsonl"
    for argv in (("verify", str(reqs)), ("replay", "verify", str(reqs), "--at", "2")):
        rc, _, err = _run(*argv, "-o", str(out), *base)
        assert rc == 0, err
        assert json.loads(out.read_text())["root_trust"] == "pinned", (argv, out.read_text())
    rc, out, _ = _run("inspect", *base, "--json", repo)
    assert rc == 0 and json.loads(out)["origin"] == "pinned"
    assert _run("log", "verify", *base)[0] == 0
    (d / "log.pub").rename(tmp_path / "log.pub")
    with pytest.raises(LogError, match="pin policy"):
        LogView(d)
    rc, _, err = _run("verify", str(reqs), "-o", str(out), *base)
    assert rc == 2 and "pin policy" in err and len(err.strip().splitlines()) == 1


# -- compromise-everywhere plans by the fold's own authority rule -----------------------------

def test_compromise_everywhere_plans_what_the_fold_accepts(tmp_path: Path) -> None:
    """A key rotated out of its role still vouches for what it signed before: the plan
    covers it (it skipped every repository where the key no longer held an active role),
    and picks the authority the fold requires (a key that was ever a root key: root)."""
    from trustlog.cli.operator_cmds import plan_compromise
    from trustlog.core.events import RootRotated

    r2, t2 = key("stages-root-2"), key("stages-targets-2")
    keys = {"R": R, "T": T, "r2": r2, "t2": t2}
    a, b = "registry.example.com/rotated/targets", "registry.example.com/rotated/root"
    envs = [
        # a: targets key T rotated out (to t2) after signing v1
        sign_event(RepoCreated(a, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R]),
        sign_event(ImageSigned(a, 2, 0, "targets", "v1", DIGEST, 1, FAR), [T]),
        sign_event(RoleKeysSet(a, 3, 0, "targets", [t2.public_key], 1, FAR), [R]),
        # b: root key R rotated out (to r2), then made its targets key
        sign_event(RepoCreated(b, 1, 0, [R.public_key], 1, [t2.public_key], 1, FAR), [R]),
        sign_event(RootRotated(b, 2, 0, [r2.public_key], 1, FAR), [R, r2]),
        sign_event(RoleKeysSet(b, 3, 0, "targets", [R.public_key], 1, FAR), [r2]),
    ]
    with TrustLog(tmp_path / "log") as tl:
        assert tl.ingest_batch([(e.to_bytes(), None) for e in envs]).accepted == len(envs)
        for k, repo, authority in ((T, a, "targets"), (R, b, "root")):
            plans = {p.repo: p for p in plan_compromise(tl.state, k.keyid, {s.keyid: n for n, s in keys.items()})}
            assert plans[repo].authority == authority, plans[repo]
            st = tl.state.repos[repo]
            ev = KeyCompromised(repo, st.version + 1, 0, k.keyid, 0)
            r = tl.ingest_batch([(sign_event(ev, [keys[n] for n in plans[repo].signers]).to_bytes(), None)])
            assert r.accepted == 1, r.last_reject


# -- every console line is plain text --------------------------------------------------------

def test_console_lines_carry_no_terminal_control(tmp_path: Path) -> None:
    """rich's ``markup=False`` does not stop ESC sequences: the UI's consoles show every
    string through safe.text. The messages that print a witness spec, a repair or a
    failure (which also raised NameError before: an escape() never imported) are
    plain, and show no markup escapes as backslashes."""
    from trustlog.cli.ui import UI

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        UI().out.print(NASTY)
    _no_control(out.getvalue())
    assert "[/][conceal]" in out.getvalue()
    d = tmp_path / "log"
    with TrustLog(d, checkpoint_every=1) as tl:
        tl.ingest_batch([(sign_event(RepoCreated("registry.example.com/a", 1, 0, [R.public_key], 1,
                                                 [T.public_key], 1, FAR), [R]).to_bytes(), None)])
    base = ("--log", str(d), "--keys", str(tmp_path / "keys"))
    place = tmp_path / "wit\x1b[31mness[x]"
    place.mkdir()
    rc, o, e = _run("checkpoint", "publish", *base, f"file:{place}")
    assert rc == 0 and "published size" in o and "\\[" not in o
    _no_control(o + e)
    rc, o, e = _run("checkpoint", "publish", *base, "http://127.0.0.1:9/[bold]")
    assert rc == 1 and "FAILED" in e and "[bold red]" not in e
    _no_control(o + e)
    rc, o, e = _run("log", "verify", *base, "--witness", f"file:{place}")
    assert rc == 0 and "witness" in e
    _no_control(o + e)
    (d / "index" / "heads.dat").unlink()
    rc, o, e = _run("log", "repair", *base)
    assert rc == 0 and "repaired" in o, (o, e)
    _no_control(o + e)


def test_serve_errors_quote_untrusted_input_as_json(tmp_path: Path) -> None:
    """Bad names in a request get a 4xx JSON error (or a non-VALID verdict) whose bytes
    hold no raw control character: JSON escapes them (other characters, bidi controls
    included, are data to a JSON client, which must escape them where it renders)."""
    from aiohttp.test_utils import TestClient, TestServer

    from trustlog.services.http import make_app
    from trustlog.services.verdicts import VerdictService

    d = tmp_path / "log"
    TrustLog(d).close()

    async def go() -> list[tuple[int, bytes]]:
        service = VerdictService(str(d))
        got = []
        try:
            async with TestClient(TestServer(make_app(service))) as c:
                for path in (f"/v1/repositories/{_pct(NASTY)}/tags/v1", f"/v1/repositories/a/tags/{_pct(NASTY)}",
                             f"/v1/repositories/a/tags/v1?digest={_pct(NASTY)}", f"/v1/repositories/a/tags/v1?{_pct(NASTY)}=1"):
                    r = await c.get(URL(path, encoded=True))
                    got.append((r.status, await r.read()))
                for body in ({"requests": [{"repo": NASTY, "tag": NASTY}]},
                             {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
                              "request": {"keys": [NASTY, f"a:{NASTY}"]}}):
                    r = await c.post("/v1/verify" if "requests" in body else "/v1/externaldata", json=body)
                    got.append((r.status, await r.read()))
        finally:
            service.close()
        return got

    for status, body in asyncio.run(go()):
        parsed = json.loads(body)
        assert not any(c < 0x20 or c == 0x7F for c in body), body   # JSON escapes every control character
        assert status in (200, 400, 404, 422), (status, parsed)
        assert b'"VALID"' not in body


# -- limits: what the decoder admits, the log must hold ----------------------------------------

def test_a_record_the_log_cannot_hold_is_refused_before_the_fold(tmp_path: Path) -> None:
    """An event within ``max_event_bytes`` whose log record is over the log's record
    limit (an imported metadata file just under its 16 MiB limit; here a JSON envelope,
    whose payload alone is measured) was folded and then failed at the append, failing
    the TrustLog on every retry. It is refused with TOO_LARGE, kept, and the log goes on."""
    from trustlog.core.events import envelope_to_json

    big = 16 * 1024 * 1024
    repo = "registry.example.com/big"
    with TrustLog(tmp_path / "log", max_event_bytes=big) as tl:
        assert tl.ingest_batch([(sign_event(RepoCreated(repo, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR),
                                            [R]).to_bytes(), None)]).accepted == 1
        env = sign_event(KeyCompromised(repo, 2, 0, T.keyid, 0, note="n" * (big - 200)), [R])
        assert len(env.payload) <= big < len(env.to_bytes())
        res = tl.ingest_batch([(envelope_to_json(env), None)])
        assert res.reasons == {"TOO_LARGE": 1} and "log record" in res.last_reject[1], res.last_reject
        ok = sign_event(KeyCompromised(repo, 2, 0, T.keyid, 0, note="small"), [R])
        assert tl.ingest_batch([(ok.to_bytes(), None)]).accepted == 1


def test_a_pin_removed_leaves_no_pinned_origin_behind(tmp_path: Path) -> None:
    """After `pins set` drops the pin a repository was created under, the writer's state
    says what a replay with the log's policy says ("tofu"), so a snapshot it writes
    agrees with a reader that folds from the start, and `log verify` passes."""
    from trustlog.core.state import Pin

    repo = "registry.example.com/pinned/app"
    d = tmp_path / "log"
    with TrustLog(d) as tl:
        tl.set_pins([Pin("registry.example.com/pinned/*", frozenset({R.keyid}))])
        env = sign_event(RepoCreated(repo, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R])
        assert tl.ingest_batch([(env.to_bytes(), None)]).accepted == 1
        tl.set_pins([])
        assert tl.state.repos[repo].origin == "tofu"
        tl.snapshot()
    with LogView(d) as snap, LogView(d, use_snapshot=False) as scratch:
        assert snap.snapshot_used is not None
        assert snap.state.repos[repo].origin == scratch.state.repos[repo].origin == "tofu"
    assert _run("log", "verify", "--log", str(d))[0] == 0
