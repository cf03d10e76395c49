"""Repositories built with the real `notary` client on the real Notary server, imported
through the changefeed: `trustlog verify` trusts exactly the tag → digest set that
`notary list` shows, repository by repository, after every step; the follower picks up
later publishes, resumes after a restart without appending twice, and records what a
misbehaving server serves with a named reason without stopping the others."""
from __future__ import annotations

import http.server
import json
import shutil
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest

from notary_server import NotaryCLI


def _open(path: Path, crypto=None):
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES

    return TrustLog(path, crypto=crypto, max_event_bytes=IMPORT_MAX_EVENT_BYTES)


def _trusted(log, gun: str, backend: str) -> dict[str, str]:
    """trustlog's VALID tag -> digest set for ``gun`` (every tag it has heard of)."""
    from trustlog.core.evaluate import Request
    from trustlog.verifier.batch import BatchVerifier

    repo = log.state.repos.get(gun)
    if repo is None:
        return {}
    tags = sorted(set(repo.tags) | set(repo.deleted_tags))
    out = {}
    for t, v in zip(tags, BatchVerifier(log.state, engine=backend).verify_all([Request(gun, t) for t in tags])):
        if v.ok:
            out[t] = v.digest
    return out


def _drain(fol) -> object:
    from trustlog.ingest.tuf_import import ImportResult

    total = ImportResult()
    while True:
        res, n = fol.poll()
        total.add(res)
        if n == 0:
            return total


@pytest.fixture
def prefix() -> str:
    return f"notary.test/{uuid.uuid4().hex[:10]}"


def test_notary_cli_repositories_agree_with_notary_list(notary_url, tmp_path: Path, crypto, prefix: str) -> None:
    from trustlog.ingest.tuf_import import NotaryClient, NotaryFollower

    n = NotaryCLI(notary_url, tmp_path / "trust")
    app, deleg = f"{prefix}/app", f"{prefix}/deleg"
    with _open(tmp_path / "log", crypto) as log:
        fol = NotaryFollower(log, NotaryClient(notary_url), f"{prefix}/*")

        def check(step: str, expect_reasons: dict | None = None) -> None:
            res = _drain(fol)
            assert dict(res.reasons) == (expect_reasons or {}), (step, res.rejects)
            for gun in (app, deleg):
                assert _trusted(log, gun, crypto.backend) == n.list(gun), (step, gun)

        # plain tags
        n("init", app, "-p")
        n.add(app, "v1", b"one")
        n.add(app, "v2", b"two", "-p")
        check("plain tags")
        assert len(n.list(app)) == 2
        # a delegated signer with a path prefix, signing through the delegation
        crt, key = n.delegation_cert("alice")
        n("init", deleg, "-p")
        n("delegation", "add", deleg, "targets/releases", str(crt), "--paths", "v", "-p")
        n("key", "import", str(key), "--role", "targets/releases")
        n.add(deleg, "v2", b"release two", "--roles", "targets/releases", "-p")
        n.add(deleg, "latest", b"latest", "-p")
        check("delegation")
        assert n.list(deleg)["v2"] and log.state.repos[deleg].tags["v2"].role == "targets/releases"
        # a targets rotation, a root rotation, snapshot moved to the server
        n("key", "rotate", app, "targets")
        n.add(app, "v3", b"three", "-p")
        check("targets rotation")
        n("key", "rotate", app, "root")
        check("root rotation")
        assert log.state.repos[app].tuf.root_version >= 2
        n("key", "rotate", app, "snapshot", "-r")
        n.add(app, "v4", b"four", "-p")
        check("snapshot on the server")
        # a removed tag, a re-pointed tag, a removed delegation
        n("remove", app, "v1", "-p")
        n.add(app, "v2", b"two, again", "-p")
        check("removed and re-pointed")
        assert "v1" in log.state.repos[app].deleted_tags
        n("delegation", "remove", deleg, "targets/releases", "-y", "-p")
        check("removed delegation")
        assert "v2" not in _trusted(log, deleg, crypto.backend)
        n_records = log.log.next_offset
        last = fol.last_id
    # a restart resumes from the last change id and appends nothing twice
    with _open(tmp_path / "log", crypto) as log:
        fol = NotaryFollower(log, NotaryClient(notary_url), f"{prefix}/*")
        assert fol.last_id <= last                   # resumes at the last page that appended
        assert _drain(fol).appended == 0 and fol.last_id >= last
        fol.last_id = 0                              # even a full re-read of the feed appends nothing
        res = _drain(fol)
        assert (res.appended, log.log.next_offset) == (0, n_records)
    from trustlog.ingest.logcheck import verify_log
    assert verify_log(tmp_path / "log").ok


def test_follow_picks_up_a_publish(notary_url, tmp_path: Path, prefix: str) -> None:
    from trustlog.ingest.tuf_import import NotaryClient, NotaryFollower

    n = NotaryCLI(notary_url, tmp_path / "trust")
    gun = f"{prefix}/live"
    n("init", gun, "-p")
    with _open(tmp_path / "log") as log:
        fol = NotaryFollower(log, NotaryClient(notary_url), f"{prefix}/*")
        stop = threading.Event()
        seen = threading.Event()

        def on_result(res, count) -> None:
            repo = log.state.repos.get(gun)
            if repo is not None and "v9" in repo.tags:
                seen.set()

        t = threading.Thread(target=fol.follow, kwargs={"interval": 0.1, "until": stop.is_set, "on_result": on_result})
        t.start()
        try:
            n.add(gun, "v9", b"nine", "-p")
            assert seen.wait(60), "the follower did not pick up the publish"
        finally:
            stop.set()
            t.join(30)
        assert _trusted(log, gun, "py") == n.list(gun)


class _StaleProxy(http.server.ThreadingHTTPServer):
    """Passes requests through to the real server, except that for one repository it
    serves the files captured earlier (a server serving older versions)."""

    def __init__(self, upstream: str, stale_gun: str, stale: dict[str, bytes]) -> None:
        self.upstream, self.stale_gun, self.stale = upstream, stale_gun, stale
        self.fail: set[str] = set()      # files answered with HTTP 500
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                prefix = f"/v2/{outer.stale_gun}/_trust/tuf/"
                body: bytes | None
                if self.path.startswith(prefix) and self.path[len(prefix):] in outer.fail:
                    body, code = b"{}", 500
                elif self.path.startswith(prefix) and self.path[len(prefix):] in outer.stale:
                    body, code = outer.stale[self.path[len(prefix):]], 200
                else:
                    try:
                        with urllib.request.urlopen(outer.upstream + self.path, timeout=10) as r:
                            body, code = r.read(), r.status
                    except urllib.error.HTTPError as e:
                        body, code = e.read(), e.code
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a) -> None:
                pass

        super().__init__(("127.0.0.1", 0), H)


def _capture(url: str, gun: str) -> dict[str, bytes]:
    out = {}
    for name in ("root.json", "timestamp.json", "snapshot.json", "targets.json"):
        with urllib.request.urlopen(f"{url}/v2/{gun}/_trust/tuf/{name}") as r:
            out[name] = r.read()
    return out


def test_misbehaving_server_refused_with_reason_others_followed(notary_url, tmp_path: Path, prefix: str) -> None:
    from trustlog.ingest.tuf_import import NotaryClient, NotaryFollower

    n = NotaryCLI(notary_url, tmp_path / "trust")
    bad, good = f"{prefix}/bad", f"{prefix}/good"
    for g in (bad, good):
        n("init", g, "-p")
        n.add(g, "v1", b"one", "-p")
    old = _capture(notary_url, bad)
    proxy = _StaleProxy(notary_url, bad, {})
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    purl = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        with _open(tmp_path / "log") as log:
            fol = NotaryFollower(log, NotaryClient(purl), f"{prefix}/*")
            assert dict(_drain(fol).reasons) == {}
            n.add(bad, "v2", b"two", "-p")
            _drain(fol)
            # now the proxy serves the older files for `bad` (a rollback), and a flipped
            # signature; `good` keeps publishing
            proxy.stale = old
            n.add(bad, "v3", b"three", "-p")
            n.add(good, "v2", b"two", "-p")
            res = _drain(fol)
            assert res.reasons == {"VERSION_ROLLBACK": 1}, res.rejects
            assert _trusted(log, good, "py") == n.list(good)
            assert set(_trusted(log, bad, "py")) == {"v1", "v2"}
            # a changed signature on the current version of targets.json
            cur = _capture(notary_url, bad)
            doc = json.loads(cur["targets.json"])
            sig = bytearray(__import__("base64").b64decode(doc["signatures"][0]["sig"]))
            sig[3] ^= 1
            doc["signatures"][0]["sig"] = __import__("base64").b64encode(bytes(sig)).decode()
            proxy.stale = {"targets.json": json.dumps(doc, separators=(",", ":")).encode()}
            n.add(good, "v3", b"three", "-p")
            n.add(bad, "v4", b"four", "-p")   # a new change for `bad`; the proxy keeps the old targets
            res = _drain(fol)
            assert set(res.reasons) <= {"SNAPSHOT_MISMATCH", "METADATA_CHANGED"} and res.rejected, res.rejects
            assert _trusted(log, good, "py") == n.list(good)
            assert sum(1 for _ in log.rejects) >= 2
    finally:
        proxy.shutdown()
        proxy.server_close()
    shutil.rmtree(tmp_path / "trust", ignore_errors=True)


def _fetch_dir(url: str, gun: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in _capture(url, gun).items():
        (dest / name).write_bytes(data)
    return dest


def test_notary_root_certificate_ids_pins_and_expiry(notary_url, tmp_path: Path, prefix: str) -> None:
    """Notary's key-id rules for root certificates: the id `notary key list` prints is
    the id of the key inside the certificate; a pin may name it; a certificate that is
    expired (at log time) or issued to another GUN does not count."""
    from trustlog.core.state import Pin
    from trustlog.core.tuf_format import parse_root
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.records import LogClock
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES, DirSource, import_repository

    n = NotaryCLI(notary_url, tmp_path / "trust")
    gun = f"{prefix}/pinned"
    n("init", gun, "-p")
    n.add(gun, "v1", b"one", "-p")
    listed = n("key", "list")
    d = _fetch_dir(notary_url, gun, tmp_path / "meta")
    root = parse_root((d / "root.json").read_bytes())
    (cert_key,) = [root.keys[k] for k in root.roles["root"].keyids]
    assert cert_key.keytype == "ecdsa-x509" and cert_key.cert_cn == gun
    assert cert_key.canonical_id in listed and cert_key.keyid not in listed

    def run(pins=(), now_ns=None, name="log"):
        kw = {"clock": LogClock(now_ns)} if now_ns else {}
        with TrustLog(tmp_path / name, max_event_bytes=IMPORT_MAX_EVENT_BYTES, **kw) as log:
            if pins:
                log.set_pins(pins)   # the pin policy is part of the log
            res = import_repository(log, gun, DirSource(d))
            return res, log.state.repos.get(gun)

    res, repo = run([Pin(f"{prefix}/*", frozenset({cert_key.canonical_id}))], name="pinned")
    assert res.rejected == 0 and repo.origin == "pinned"
    res, repo = run([Pin(f"{prefix}/*", frozenset({"00" * 32}))], name="wrong-pin")
    assert res.reasons == {"PIN_MISMATCH": 1} and repo is None
    after = (cert_key.cert_not_after + 86400) * 1_000_000_000
    res, repo = run(now_ns=lambda: after, name="expired-cert")
    assert res.reasons == {"UNKNOWN_KEY": 1} and repo is None
    # the same root filed under another GUN: its certificate names a different one
    with TrustLog(tmp_path / "other-gun", max_event_bytes=IMPORT_MAX_EVENT_BYTES) as log:
        res = import_repository(log, f"{prefix}/elsewhere", DirSource(d))
        assert res.reasons == {"UNKNOWN_KEY": 1}


def test_unreadable_server_is_retried_never_skipped(notary_url, tmp_path: Path, prefix: str) -> None:
    from trustlog.ingest.tuf_import import MetadataSourceError, NotaryClient, NotaryFollower

    n = NotaryCLI(notary_url, tmp_path / "trust")
    gun = f"{prefix}/flaky"
    n("init", gun, "-p")
    n.add(gun, "v1", b"one", "-p")
    proxy = _StaleProxy(notary_url, gun, {})
    proxy.fail = {"targets.json"}
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with _open(tmp_path / "log") as log:
            fol = NotaryFollower(log, NotaryClient(f"http://127.0.0.1:{proxy.server_address[1]}"), gun)
            with pytest.raises(MetadataSourceError):
                _drain(fol)                          # the page with our change cannot be read
            stuck = fol.last_id
            with pytest.raises(MetadataSourceError):
                fol.poll()                           # ... and is read again, not skipped
            assert fol.last_id == stuck and log.log.next_offset == 0
            proxy.fail = set()
            _drain(fol)
            assert _trusted(log, gun, "py") == n.list(gun) == {"v1": _trusted(log, gun, "py")["v1"]}
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_two_delegated_signers_publishing_at_once_both_land(notary_url, tmp_path: Path, prefix: str) -> None:
    """Two signers, each holding only their delegation's key, publish different tags of
    one repository at the same moment (snapshot on the server): Notary versions each
    role's metadata separately, and both land in trustlog as in `notary list`."""
    from concurrent.futures import ThreadPoolExecutor

    from trustlog.ingest.tuf_import import NotaryClient, NotaryFollower

    owner = NotaryCLI(notary_url, tmp_path / "owner" / "trust")
    gun = f"{prefix}/team"
    owner("init", gun, "-p")
    owner("key", "rotate", gun, "snapshot", "-r")
    signers = {}
    for name in ("alice", "bob"):
        cli = NotaryCLI(notary_url, tmp_path / name / "trust")
        crt, key = cli.delegation_cert(name)
        owner("delegation", "add", gun, f"targets/{name}", str(crt), "--paths", f"{name}-", "-p")
        cli("key", "import", str(key), "--role", f"targets/{name}")
        signers[name] = cli
    for cli in signers.values():
        cli.list(gun)      # each signer has the current metadata

    def publish(name: str) -> None:
        try:
            signers[name].add(gun, f"{name}-1", name.encode(), "--roles", f"targets/{name}", "-p")
        except AssertionError as e:
            # The server applies one update of the repository at a time and refuses the
            # one that lost the race ("trust server rejected operation"); the change stays
            # staged and the signer publishes again, as a real one would.
            if "rejected operation" not in str(e):
                raise
            signers[name]("publish", gun)

    with ThreadPoolExecutor(2) as ex:
        list(ex.map(publish, signers))
    with _open(tmp_path / "log") as log:
        fol = NotaryFollower(log, NotaryClient(notary_url), gun)
        assert dict(_drain(fol).reasons) == {}
        trusted = _trusted(log, gun, "py")
        assert trusted == owner.list(gun) and set(trusted) == {"alice-1", "bob-1"}
        assert {log.state.repos[gun].tags[t].role for t in trusted} == {"targets/alice", "targets/bob"}


def test_notary_delegation_wider_than_its_parent_is_refused(notary_url, tmp_path: Path, prefix: str) -> None:
    """Notary's client never writes a nested delegation wider than its parent: one that
    claims paths outside its parent's, signed with the parent's real key, is refused
    (OUTSIDE_PATTERNS); the same delegation within the parent's paths is accepted."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from trustlog.core.events import Envelope, MetadataImported, encode_event
    from trustlog.core.tuf_format import canonical_json, notary_key_id
    from trustlog.ingest.tuf_import import NotaryClient, NotaryFollower

    n = NotaryCLI(notary_url, tmp_path / "trust")
    gun = f"{prefix}/nested"
    crt, key = n.delegation_cert("alice")
    n("init", gun, "-p")
    n("delegation", "add", gun, "targets/releases", str(crt), "--paths", "v", "-p")
    n("key", "import", str(key), "--role", "targets/releases")
    n.add(gun, "v1", b"one", "--roles", "targets/releases", "-p")
    priv = serialization.load_pem_private_key(key.read_bytes(), None)
    pub_b64 = base64.b64encode(crt.read_bytes()).decode()
    kid = notary_key_id("ecdsa-x509", pub_b64)
    with _open(tmp_path / "log") as log:
        _drain(NotaryFollower(log, NotaryClient(notary_url), gun))
        current = json.loads(_capture_role(notary_url, gun, "targets/releases"))

        def nested(paths: list[str], version: int) -> bytes:
            signed = dict(current["signed"], version=version, delegations={
                "keys": {kid: {"keytype": "ecdsa-x509", "keyval": {"private": None, "public": pub_b64}}},
                "roles": [{"name": "targets/releases/ci", "keyids": [kid], "threshold": 1, "paths": paths}]})
            r, s = decode_dss_signature(priv.sign(canonical_json(signed), ec.ECDSA(hashes.SHA256())))
            sig = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
            return json.dumps({"signed": signed, "signatures": [{"keyid": kid, "method": "ecdsa", "sig": sig}]}).encode()

        def submit(data: bytes):
            ev = MetadataImported(gun, log.state.repos[gun].version + 1, 0, "targets/releases", data)
            return log.ingest_batch([(Envelope(encode_event(ev), []).to_bytes(), None)])

        v = current["signed"]["version"]
        r = submit(nested(["x"], v + 1))
        assert r.rejected == 1 and r.last_reject[0] == "OUTSIDE_PATTERNS", r.last_reject
        assert submit(nested(["v1."], v + 1)).accepted == 1
        assert "targets/releases/ci" in log.state.repos[gun].roles


def _capture_role(url: str, gun: str, role: str) -> bytes:
    with urllib.request.urlopen(f"{url}/v2/{gun}/_trust/tuf/{role}.json") as r:
        return r.read()
