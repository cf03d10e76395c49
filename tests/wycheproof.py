"""Loader for the Project Wycheproof signature vectors in ``tests/vectors/wycheproof``.

One loader for the four files trustlog uses; each file's public key is taken from the
field that matches trustlog's key encoding for that algorithm (see the README there).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from collections.abc import Callable, Iterator

from trustlog.core.keys import ALG_ECDSA_P256_DER, ALG_ECDSA_P256_RAW, ALG_ED25519, ALG_RSA_PSS_SHA256

VECTORS: Final = Path(__file__).parent / "vectors" / "wycheproof"

Result = Literal["valid", "invalid", "acceptable"]


def _ed25519_key(group: dict) -> str:
    return group["publicKey"]["pk"]


def _ec_key(group: dict) -> str:
    return group["publicKey"]["uncompressed"]


def _rsa_key(group: dict) -> str:
    return group["publicKeyDer"]  # SubjectPublicKeyInfo; publicKeyAsn is bare PKCS#1


# file name -> (trustlog alg code, test group type, how to read the public key)
FILES: Final[dict[str, tuple[int, str, Callable[[dict], str]]]] = {
    "ed25519_test.json": (ALG_ED25519, "EddsaVerify", _ed25519_key),
    "ecdsa_secp256r1_sha256_p1363_test.json": (ALG_ECDSA_P256_RAW, "EcdsaP1363Verify", _ec_key),
    "ecdsa_secp256r1_sha256_test.json": (ALG_ECDSA_P256_DER, "EcdsaVerify", _ec_key),
    "rsa_pss_2048_sha256_mgf1_32_test.json": (ALG_RSA_PSS_SHA256, "RsassaPssVerify", _rsa_key),
}


@dataclass(frozen=True, slots=True)
class Vector:
    file: str
    tc_id: int
    alg: int
    key: bytes
    msg: bytes
    sig: bytes
    result: Result
    comment: str
    flags: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.file.removesuffix('_test.json')}-{self.tc_id}"

    def item(self) -> tuple[int, bytes, bytes, bytes]:
        return (self.alg, self.key, self.msg, self.sig)


def load(name: str) -> Iterator[Vector]:
    """Every test case of one vector file, in file order."""
    alg, group_type, key_of = FILES[name]
    data = json.loads((VECTORS / name).read_text())
    n = 0
    for group in data["testGroups"]:
        if group["type"] != group_type:
            raise ValueError(f"{name}: unexpected test group type {group['type']!r}")
        if alg == ALG_RSA_PSS_SHA256 and (group["sha"], group["mgfSha"], group["sLen"]) != ("SHA-256", "SHA-256", 32):
            raise ValueError(f"{name}: group is not PSS/SHA-256/MGF1-SHA-256/salt 32")
        key = bytes.fromhex(key_of(group))
        for t in group["tests"]:
            n += 1
            yield Vector(
                file=name,
                tc_id=t["tcId"],
                alg=alg,
                key=key,
                msg=bytes.fromhex(t["msg"]),
                sig=bytes.fromhex(t["sig"]),
                result=t["result"],
                comment=t.get("comment", ""),
                flags=tuple(t.get("flags", ())),
            )
    if n != data["numberOfTests"]:
        raise ValueError(f"{name}: read {n} tests, file says {data['numberOfTests']}")


def load_all() -> list[Vector]:
    return [v for name in FILES for v in load(name)]
