"""Keys on disk, kept the way a security tool keeps them.

A key named NAME is two files in the key directory:

* ``NAME.key`` — the private key as PKCS#8 PEM, mode 0600, encrypted with a passphrase
  when one is given;
* ``NAME.pub`` — JSON ``{"name", "keytype", "keyid", "public"}`` (public is base64), safe
  to share.

Passphrases come from the environment for automation, like Docker Content Trust's
``DOCKER_CONTENT_TRUST_*_PASSPHRASE``: ``TRUSTLOG_<NAME>_PASSPHRASE`` for one key, else
``TRUSTLOG_PASSPHRASE``; otherwise from a prompt when a terminal is attached.
"""
from __future__ import annotations

import getpass
import os
import re
import sys
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustlog.core.errors import BadPassphraseError, InputError, InvalidKeyError
from trustlog.core.keys import KEY_TYPES, PublicKey, SigningKey, validate_public_key

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class PublicKeyFile(msgspec.Struct, frozen=True):
    name: str
    keytype: str
    keyid: str
    public: bytes


def passphrase_env_var(name: str) -> str:
    return "TRUSTLOG_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_PASSPHRASE"


def passphrase_from_env(name: str) -> str | None:
    return os.environ.get(passphrase_env_var(name)) or os.environ.get("TRUSTLOG_PASSPHRASE")


class KeyStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not _NAME_RE.fullmatch(name):
            raise InputError(f"{name!r} is not a valid key name (letters, digits, '.', '_', '-')")
        return self.dir / f"{name}.key", self.dir / f"{name}.pub"

    def generate(self, name: str, keytype: str = "ed25519", passphrase: str | None = None) -> SigningKey:
        """Create and store a new key; refuses to overwrite an existing one."""
        if keytype not in KEY_TYPES:
            raise InputError(f"unknown key type {keytype!r}; use one of {', '.join(KEY_TYPES)}")
        priv_path, pub_path = self._paths(name)
        if priv_path.exists() or pub_path.exists():
            raise InputError(f"a key named {name!r} already exists in {self.dir}; choose another name")
        key = SigningKey.generate(keytype)
        self.save(name, key, passphrase)
        return key

    def save(self, name: str, key: SigningKey, passphrase: str | None = None) -> None:
        priv_path, pub_path = self._paths(name)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        enc = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
               else serialization.NoEncryption())
        pem = key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(f"trustlog-keytype: {key.keytype}\n".encode() + pem)
        pub = PublicKeyFile(name, key.keytype, key.keyid, key.public_key.public)
        pub_path.write_bytes(msgspec.json.encode(pub) + b"\n")

    def load(self, name: str, passphrase: str | None = None, *, prompt: bool = True) -> SigningKey:
        """Load a private key; the passphrase comes from the argument, the environment,
        or (if ``prompt`` and a terminal is attached) a prompt."""
        priv_path, _ = self._paths(name)
        try:
            data = priv_path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"no private key {name!r} in {self.dir} (generate one with `trustlog key generate {name}`)") from None
        mode = priv_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InputError(f"{priv_path} is readable by others (mode {mode:o}); run `chmod 600 {priv_path}`")
        header, _, pem = data.partition(b"\n")
        if not header.startswith(b"trustlog-keytype: "):
            raise InvalidKeyError(f"{priv_path} is not a trustlog key file (missing keytype header)")
        keytype = header.split(b": ", 1)[1].decode().strip()
        encrypted = b"ENCRYPTED" in pem[:64]
        if passphrase is None and encrypted:
            passphrase = passphrase_from_env(name)
            if passphrase is None and prompt and sys.stdin.isatty():
                passphrase = getpass.getpass(f"Passphrase for key {name!r}: ")
            if passphrase is None:
                raise BadPassphraseError(
                    f"key {name!r} is encrypted; set {passphrase_env_var(name)} or TRUSTLOG_PASSPHRASE"
                )
        try:
            private = serialization.load_pem_private_key(pem, passphrase.encode() if (passphrase and encrypted) else None)
        except ValueError as e:
            if encrypted:
                raise BadPassphraseError(f"wrong passphrase for key {name!r}") from e
            raise InvalidKeyError(f"{priv_path}: {e}") from e
        except TypeError as e:
            raise BadPassphraseError(f"key {name!r}: {e}") from e
        if not isinstance(private, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise InvalidKeyError(f"{priv_path}: unsupported private key type")
        return SigningKey(keytype, private)

    def public(self, name_or_path: str) -> PublicKey:
        """A public key by name in the store, or from a ``.pub`` file path."""
        path = Path(name_or_path)
        if path.suffix != ".pub" or not path.exists():
            path = self._paths(name_or_path)[1]
        try:
            pub = msgspec.json.decode(path.read_bytes(), type=PublicKeyFile)
        except FileNotFoundError:
            raise InputError(f"no public key {name_or_path!r} in {self.dir}") from None
        except msgspec.DecodeError as e:
            raise InputError(f"{path}: not a trustlog public key file: {e}") from e
        key = validate_public_key(PublicKey(pub.keytype, pub.public))
        if key.keyid != pub.keyid:
            raise InvalidKeyError(f"{path}: key id does not match the key (file edited?)")
        return key

    def names(self) -> list[str]:
        if not self.dir.exists():
            return []
        return sorted(p.stem for p in self.dir.glob("*.pub"))
