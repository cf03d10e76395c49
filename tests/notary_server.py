"""The real Notary v1 server for tests, started by the project's script
(scripts/notary/notary.sh), and the real `notary` client driving it."""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import pytest

from conftest import require_or_skip

ROOT_DIR = Path(__file__).resolve().parent.parent
SCRIPT = ROOT_DIR / "scripts" / "notary" / "notary.sh"
PASSPHRASES = {f"NOTARY_{r}_PASSPHRASE": "trustlog-test" for r in ("ROOT", "TARGETS", "SNAPSHOT", "DELEGATION")}


@pytest.fixture(scope="session")
def notary_url() -> str:
    """The server's URL; started (and stopped again) here if it was not running."""
    running = subprocess.run([str(SCRIPT), "url"], capture_output=True, text=True)
    if running.returncode == 0:
        yield running.stdout.strip()
        return
    try:
        p = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "start failed")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        require_or_skip("notary-server (Debian package notary, via scripts/notary/notary.sh)", e)
        raise
    try:
        yield p.stdout.strip()
    finally:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True)


class NotaryCLI:
    """The `notary` client (v0.7.0) with its own trust directory."""

    def __init__(self, url: str, trust_dir: Path) -> None:
        self.url, self.trust_dir = url, trust_dir
        self.files = trust_dir.parent / "files"
        self.files.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str) -> str:
        env = {**os.environ, **PASSPHRASES}
        p = subprocess.run(["notary", "-s", self.url, "-d", str(self.trust_dir), *args], capture_output=True,
                           text=True, env=env, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"notary {' '.join(args)} failed: {p.stdout}{p.stderr}")
        return p.stdout

    def add(self, gun: str, tag: str, content: bytes, *extra: str) -> None:
        f = self.files / f"{abs(hash((gun, tag, content)))}"
        f.write_bytes(content)
        self("add", gun, tag, str(f), *extra)

    def list(self, gun: str) -> dict[str, str]:
        """``notary list``: tag -> sha256:<hex>, the client's own trusted view."""
        out: dict[str, str] = {}
        try:
            text = self("list", gun)
        except AssertionError as e:
            if "No targets present" in str(e) or "does not have trust data" in str(e):
                return out
            raise
        for line in text.splitlines()[2:]:
            parts = line.split()
            if len(parts) >= 4:
                out[parts[0]] = "sha256:" + parts[1]
        return out

    def delegation_cert(self, name: str) -> tuple[Path, Path]:
        """A self-signed ECDSA certificate and key for a delegated signer."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        k = ec.generate_private_key(ec.SECP256R1())
        subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj).public_key(k.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365)).sign(k, hashes.SHA256()))
        crt, key = self.files / f"{name}.crt", self.files / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        return crt, key
