"""``trustlog witness serve``: a small C2SP tlog-witness (https://c2sp.org/tlog-witness)
that co-signs a log's checkpoints only after checking that each one extends the last
it co-signed, and keeps that state in its own directory, on its own host.

Layout of the witness directory::

    witness.key, witness.pub   its Ed25519 key (trustlog key store; passphrase as for any key)
    witness.vkey               its verifier key NAME+HASH+base64(0x04 || key), for verifiers
    state/<origin>.note        per log: the latest checkpoint it co-signed, with its cosignature
    evidence/                  requests that failed a consistency check (proof of misbehaviour)

``POST /add-checkpoint`` follows the spec: 404 for an unknown origin, 403 when the log's
signature does not verify, 400 for an old size past the new one, 409 (``text/x.tlog.size``
body: its size) when the old size is not the one it last co-signed or the same size
comes with another root, 422 when the consistency proof fails; otherwise it persists
the co-signed checkpoint (fsync, rename) and answers the ``cosignature/v1`` line.
Requests are handled one at a time, so the check and the update are atomic.
``GET /checkpoint?origin=O`` returns the stored co-signed checkpoint (a trustlog
extension for monitors and ``log verify --witness``).
"""
from __future__ import annotations

import base64
import binascii
import os
import time
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from trustlog.core.checkpoint import checkpoint_from_note, parse_checkpoint_body, verify_checkpoint
from trustlog.core.errors import TrustlogError
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core.merkle import verify_consistency
from trustlog.core.note import (
    ALG_COSIGNATURE_V1, Note, cosignature, cosignature_message, parse_note, valid_name, verifier_key,
)

from .keystore import KeyStore
from .transparency import origin_for
from .witness import _origin_dir

MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63
WITNESS_KEY = "witness"


class Witness:
    """The witness's key, the logs it follows, and its state directory (no HTTP)."""

    def __init__(self, directory: str | os.PathLike[str], log_keys: Sequence[PublicKey], name: str | None = None,
                 clock=time.time) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        ks = KeyStore(self.dir)
        if not (self.dir / f"{WITNESS_KEY}.key").exists():
            ks.generate(WITNESS_KEY, "ed25519")
        self.key: SigningKey = ks.load(WITNESS_KEY, prompt=False)
        if self.key.keytype != "ed25519":
            raise TrustlogError(f"{self.dir}/{WITNESS_KEY}.key must be Ed25519")
        self.name = name or f"trustlog-witness/{self.key.keyid[:16]}"
        if not valid_name(self.name):
            raise TrustlogError(f"witness name {self.name!r} must hold no spaces and no '+'")
        self.vkey = verifier_key(self.name, ALG_COSIGNATURE_V1, self.key.public_key.public)
        (self.dir / "witness.vkey").write_text(self.vkey + "\n", encoding="utf-8")
        self.logs = {origin_for(k): k for k in log_keys}
        self.clock = clock
        (self.dir / "state").mkdir(exist_ok=True)

    def _state_path(self, origin: str) -> Path:
        return self.dir / "state" / f"{_origin_dir(origin)}.note"

    def latest(self, origin: str) -> bytes | None:
        p = self._state_path(origin)
        return p.read_bytes() if p.is_file() else None

    def add_checkpoint(self, body: bytes) -> tuple[int, bytes, str]:
        """One add-checkpoint request: ``(HTTP status, response body, content type)``."""
        # (1) old size line, proof lines, blank line, checkpoint note
        try:
            head, sep, note_bytes = body.partition(b"\n\n")
            lines = head.decode("ascii").split("\n")
            if not sep or not lines[0].startswith("old ") or not lines[0][4:].isdigit() or \
                    (lines[0][4:] != "0" and lines[0][4] == "0"):
                return 400, b"the body starts with 'old <size>', proof lines and a blank line\n", "text/plain"
            old = int(lines[0][4:])
            proof = [base64.b64decode(x, validate=True) for x in lines[1:]]
            if len(proof) > MAX_PROOF_LINES or any(len(h) != 32 for h in proof):
                return 400, b"at most 63 proof lines of one base64 SHA-256 hash each\n", "text/plain"
            note = parse_note(note_bytes)
            cp = parse_checkpoint_body(note.text)
        except (UnicodeDecodeError, binascii.Error, TrustlogError) as e:
            return 400, f"malformed request: {e}\n".encode(), "text/plain"
        # (2) a log this witness follows, signed by its key
        key = self.logs.get(cp.origin)
        if key is None:
            return 404, f"unknown log {cp.origin!r}\n".encode(), "text/plain"
        try:
            signed, _ = checkpoint_from_note(note_bytes, key)
            verify_checkpoint(signed, key, origin=cp.origin)
        except TrustlogError as e:
            return 403, f"no valid signature by the log key: {e}\n".encode(), "text/plain"
        if old > cp.tree_size:
            return 400, b"old size is past the checkpoint's size\n", "text/plain"
        # (3) consistent with the last checkpoint it co-signed for this log
        prev = self.latest(cp.origin)
        prev_cp = parse_checkpoint_body(parse_note(prev).text) if prev else None
        prev_size = prev_cp.tree_size if prev_cp else 0
        if old != prev_size:
            return 409, f"{prev_size}\n".encode(), "text/x.tlog.size"
        if prev_cp is not None:
            if old == cp.tree_size:
                if cp.root_hash != prev_cp.root_hash:
                    self._evidence(cp.origin, body, "same size, another root")
                    return 409, f"{prev_size}\n".encode(), "text/x.tlog.size"
            else:
                try:
                    verify_consistency(old, cp.tree_size, prev_cp.root_hash, cp.root_hash, proof)
                except TrustlogError as e:
                    self._evidence(cp.origin, body, str(e))
                    return 422, f"consistency proof from {old} does not verify: {e}\n".encode(), "text/plain"
        elif proof:
            return 422, b"the proof from size 0 must be empty\n", "text/plain"
        # (4) co-sign, persist, answer
        ts = int(self.clock())
        line = cosignature(self.name, self.key.public_key.public, ts,
                           self.key.sign(cosignature_message(note.text, ts)))
        own = tuple(s for s in note.signatures if s.name == cp.origin)
        self._persist(cp.origin, Note(note.text, (*own, line)).encode())
        return 200, line.line().encode(), "text/plain; charset=utf-8"

    def _persist(self, origin: str, data: bytes) -> None:
        path = self._state_path(origin)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _evidence(self, origin: str, body: bytes, why: str) -> None:
        d = self.dir / "evidence"
        d.mkdir(exist_ok=True)
        (d / f"{_origin_dir(origin)}.{time.time_ns()}.req").write_bytes(f"# {why}\n".encode() + body)


class _Handler(BaseHTTPRequestHandler):
    witness: Witness
    server_version = "trustlog-witness"

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != "/add-checkpoint":
            self._reply(404, b"POST /add-checkpoint\n")
            return
        length = self.headers.get("Content-Length") or "0"
        n = int(length) if length.isdigit() else 0
        if not 0 < n <= MAX_BODY:
            self._reply(400, f"a request body of 1..{MAX_BODY} bytes\n".encode())
            return
        try:
            self._reply(*self.witness.add_checkpoint(self.rfile.read(n)))
        except OSError as e:   # the state could not be persisted: nothing was co-signed
            self._reply(500, f"witness state not written: {e.strerror or e}\n".encode())

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        origin = urllib.parse.parse_qs(url.query).get("origin", [""])[0]
        if url.path.rstrip("/") != "/checkpoint" or not origin:
            self._reply(404, b"GET /checkpoint?origin=ORIGIN\n")
            return
        data = self.witness.latest(origin)
        if data is None:
            self._reply(404, f"no checkpoint of {origin!r}\n".encode())
        else:
            self._reply(200, data, "text/plain; charset=utf-8")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
        pass


def make_server(witness: Witness, host: str, port: int) -> HTTPServer:
    """A single-threaded HTTP server (one request at a time: check and update are atomic)."""
    handler = type("WitnessHandler", (_Handler,), {"witness": witness})
    return HTTPServer((host, port), handler)
