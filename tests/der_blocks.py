"""DER building blocks for hand-made keys: every length form, OIDs and parameters.

Kept apart from ``crypto_strategies`` (which needs hypothesis) so that a benchmark run
from a plain ``pip install .`` (``benchmarks/crafted_events.py``) can build keys with them.
"""
from __future__ import annotations


def der_len(n: int, form: str = "minimal") -> bytes:
    if form == "long" or (form == "minimal" and n >= 0x80):
        raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
        if form == "long":
            raw = b"\0" + raw if n >= 0x80 else raw  # non-minimal: long form or a zero byte
        return bytes([0x80 | len(raw)]) + raw
    return bytes([n])


def tlv(tag: int, content: bytes, form: str = "minimal") -> bytes:
    if form == "indefinite":
        return bytes([tag, 0x80]) + content + b"\0\0"
    return bytes([tag]) + der_len(len(content), form) + content


def der_int(v: int, pad: bytes = b"", form: str = "minimal") -> bytes:
    raw = v.to_bytes(v.bit_length() // 8 + 1, "big") if v >= 0 else v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
    return tlv(0x02, pad + raw, form)


OID_RSA = tlv(0x06, bytes.fromhex("2a864886f70d010101"))
OID_PSS = tlv(0x06, bytes.fromhex("2a864886f70d01010a"))
OID_EC = tlv(0x06, bytes.fromhex("2a8648ce3d0201"))
NULL = b"\x05\x00"
SHA256_ALG = tlv(0x30, tlv(0x06, bytes.fromhex("608648016503040201")) + NULL)
PSS_PARAMS = tlv(0x30, tlv(0xA0, SHA256_ALG)
                 + tlv(0xA1, tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010108")) + SHA256_ALG))
                 + tlv(0xA2, tlv(0x02, b"\x20")))
ALG_IDS = {
    "rsa+null": OID_RSA + NULL, "rsa": OID_RSA, "pss": OID_PSS, "pss+params": OID_PSS + PSS_PARAMS,
    "pss+null": OID_PSS + NULL, "rsa+null+null": OID_RSA + NULL + NULL, "rsa+int": OID_RSA + b"\x02\x01\x00",
    "ec": OID_EC + tlv(0x06, bytes.fromhex("2a8648ce3d030107")), "empty": b"",
}
