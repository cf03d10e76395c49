"""The compiled and the pure-Python crypto backends give the same byte for every item.

A divergence between them is a security bug (docs/ARCHITECTURE.md, "The twin rule"): one path would accept what the
other rejects. Batches are built from real signatures of all four algorithms plus the
Wycheproof vectors, then mutated (bit flips in key, message or signature, truncations,
extensions, unknown algorithm codes, empty buffers, keys and signatures swapped across
algorithms) and run through both backends. Every key type has one accepted encoding
(``trustlog.core.keyparse``); the other encodings of the same key get their own tables,
and must be invalid on both. The million-input run is ``scripts/fuzz_crypto_differential.py``.
"""
from __future__ import annotations

import random
from array import array
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto_strategies as cs
import wycheproof
from conftest import load_backend
from trustlog.core.keys import (
    ALG_ECDSA_P256_DER, ALG_ECDSA_P256_RAW, ALG_ED25519, ALG_RSA_PSS_SHA256, SigningKey, crypto_valid, raw_to_der,
)
from trustlog.verifier.backend import load
from trustlog.verifier.crypto_batch import pack_batch

Item = tuple[int, bytes, bytes, bytes]


@pytest.fixture(scope="module")
def c() -> ModuleType:
    return load_backend("c")


PY = load("py")


def _signed(keytype: str, k: SigningKey, msg: bytes) -> Item:
    return (k.public_key.alg, k.public_key.public, msg, k.sign(msg))


def _corpus() -> list[Item]:
    rng = random.Random(1234)
    items: list[Item] = []
    keys = [
        SigningKey.from_seed(b"diff-ed-1"), SigningKey.from_seed(b"diff-ed-2"),
        SigningKey.generate("ecdsa-p256"), SigningKey.generate("ecdsa-p256-der"),
        SigningKey.generate("rsa-pss-sha256"),
    ]
    for k in keys:
        for size in (0, 1, 32, 200):
            items.append(_signed(k.keytype, k, rng.randbytes(size)))
    # The same P-256 key under the other label, and as a compressed point (refused).
    p256 = keys[2]
    raw_sig = items[8]
    comp = p256.private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    items.append((ALG_ECDSA_P256_RAW, comp, raw_sig[2], raw_sig[3]))
    der_twin = SigningKey("ecdsa-p256-der", p256.private)
    items.append(_signed("ecdsa-p256-der", der_twin, b"twin"))
    items.append((ALG_ECDSA_P256_DER, comp, b"twin", items[-1][3]))
    vectors = wycheproof.load_all()
    items += [v.item() for v in rng.sample(vectors, 120)]
    return items


CORPUS = _corpus()
ALG_CODES = [0, ALG_ED25519, ALG_ECDSA_P256_RAW, ALG_ECDSA_P256_DER, ALG_RSA_PSS_SHA256, 5, 9, 255]


def _flip(b: bytes, bit: int) -> bytes:
    if not b:
        return b
    bit %= len(b) * 8
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def mutated_item(draw: st.DrawFn) -> Item:
    alg, key, msg, sig = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(["key", "msg", "sig", "alg"]))
        op = draw(st.sampled_from(["flip", "truncate", "extend", "empty", "swap"]))
        if field == "alg":
            alg = draw(st.sampled_from(ALG_CODES))
            continue
        value = {"key": key, "msg": msg, "sig": sig}[field]
        if op == "flip":
            value = _flip(value, draw(st.integers(0, 1 << 16)))
        elif op == "truncate":
            value = value[: draw(st.integers(0, max(0, len(value) - 1)))]
        elif op == "extend":
            value = value + draw(st.binary(min_size=1, max_size=3))
        elif op == "empty":
            value = b""
        else:  # the same field from another item, usually of another algorithm
            other = draw(st.sampled_from(CORPUS))
            value = {"key": other[1], "msg": other[2], "sig": other[3]}[field]
        key, msg, sig = (value if field == "key" else key, value if field == "msg" else msg,
                         value if field == "sig" else sig)
    return (alg, key, msg, sig)


def _both(c: ModuleType, items: list[Item], nthreads: int = 2) -> tuple[bytearray, bytearray]:
    args = pack_batch(items).args()
    return c.verify_batch(*args, nthreads=nthreads), PY.verify_batch(*args, nthreads=1)


def _diff(items: list[Item], got_c: bytearray, got_py: bytearray) -> list[str]:
    return [
        f"#{i} alg={it[0]} key={it[1].hex()} msg={it[2].hex()} sig={it[3].hex()}: c={a} py={b}"
        for i, (it, a, b) in enumerate(zip(items, got_c, got_py))
        if a != b
    ]


def test_unmutated_corpus_verifies_as_the_reference_says(c: ModuleType) -> None:
    got_c, got_py = _both(c, CORPUS)
    assert _diff(CORPUS, got_c, got_py) == []
    assert list(got_py) == [int(crypto_valid(*it)) for it in CORPUS]
    assert all(got_c[:20]) and got_c[21] == 1  # freshly signed items and the label twin verify
    assert got_c[20] == got_c[22] == 0  # a compressed point is not the accepted encoding


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(mutated_item(), min_size=0, max_size=24), nthreads=st.sampled_from([1, 2, 3]))
def test_mutated_batches_agree(c: ModuleType, items: list[Item], nthreads: int) -> None:
    got_c, got_py = _both(c, items, nthreads)
    assert _diff(items, got_c, got_py) == []


@settings(max_examples=100, deadline=None)
@given(items=st.lists(st.tuples(st.sampled_from(ALG_CODES), st.binary(max_size=70), st.binary(max_size=8),
                                st.binary(max_size=70)), max_size=16))
def test_random_bytes_agree(c: ModuleType, items: list[Item]) -> None:
    got_c, got_py = _both(c, items)
    assert _diff(items, got_c, got_py) == []
    assert set(got_c) <= {0}  # random keys and signatures never verify, and never error


def test_one_thread_and_two_threads_identical(c: ModuleType) -> None:
    rng = random.Random(99)
    items = []
    for _ in range(3000):
        alg, key, msg, sig = rng.choice(CORPUS)
        r = rng.random()
        if r < 0.2:
            sig = _flip(sig, rng.randrange(1 << 16))
        elif r < 0.3:
            key = _flip(key, rng.randrange(1 << 16))
        elif r < 0.35:
            alg = rng.choice(ALG_CODES)
        items.append((alg, key, msg, sig))
    args = pack_batch(items).args()
    one, two = c.verify_batch(*args, nthreads=1), c.verify_batch(*args, nthreads=2)
    assert one == two == c.verify_batch(*args, nthreads=0)
    assert one == PY.verify_batch(*args, nthreads=2)
    assert 0 < sum(one) < len(items)


# --- RSA SubjectPublicKeyInfo encodings -------------------------------------------

def _long(tag: int, content: bytes) -> bytes:
    """A non-minimal length (a leading zero length byte), which DER forbids."""
    return cs.tlv(tag, content, "long")


def _spki(alg_id: bytes, pkcs1: bytes, pad: int = 0, form: str = "minimal") -> bytes:
    return cs.tlv(0x30, cs.tlv(0x30, alg_id) + cs.tlv(0x03, bytes([pad]) + pkcs1), form)


def _sign(priv: rsa.RSAPrivateKey, msg: bytes) -> bytes:
    """PSS-SHA256 with salt 32, also for keys SigningKey refuses (out of bounds)."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return priv.sign(msg, pss, hashes.SHA256())


@pytest.fixture(scope="module")
def rsa_case() -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    k = SigningKey.generate("rsa-pss-sha256")
    msg = b"spki variants"
    return k.private, msg, k.sign(msg)


# name -> verdict for a good signature: only the canonical encoding is accepted
SPKI_CASES = {
    "canonical": 1,
    "params absent": 0,
    "pss oid, no params": 0,
    "pss oid, sha256 params": 0,
    "pkcs1 only": 0,
    "pss oid, garbage params": 0,
    "pss oid, NULL params": 0,
    "params not NULL": 0,
    "extra after params": 0,
    "non-minimal outer length": 0,
    "non-minimal inner length": 0,
    "non-minimal pkcs1 length": 0,
    "non-minimal length, bare pkcs1": 0,
    "indefinite length": 0,
    "trailing byte": 0,
    "trailing byte, bare pkcs1": 0,
    "trailing in pkcs1": 0,
    "leading zero in n": 0,
    "leading zero in e": 0,
    "negative n": 0,
    "bitstring pad 1 over a set bit": 0,
    "bitstring pad 8": 0,
    "bitstring empty": 0,
    "bitstring constructed": 0,
    "e = 1": 0,
    "e = 0": 0,
    "e even": 0,
    "n 2047 bits": 0,
    "n 16385 bits": 0,
    "ec oid": 0,
    "empty": 0,
    "int only": 0,
}


def _variants(priv: rsa.RSAPrivateKey) -> dict[str, bytes]:
    nums = priv.public_key().public_numbers()
    n, e = nums.n, nums.e
    pk1 = cs.tlv(0x30, cs.der_int(n) + cs.der_int(e))
    canonical = _spki(cs.OID_RSA + cs.NULL, pk1)
    assert canonical == priv.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    v = {
        "canonical": canonical,
        "params absent": _spki(cs.OID_RSA, pk1),
        "pss oid, no params": _spki(cs.OID_PSS, pk1),
        "pss oid, sha256 params": _spki(cs.OID_PSS + cs.PSS_PARAMS, pk1),
        "pkcs1 only": pk1,
        "pss oid, garbage params": _spki(cs.OID_PSS + b"\x30\x03\x02\x01\x20", pk1),
        "pss oid, NULL params": _spki(cs.OID_PSS + cs.NULL, pk1),
        "params not NULL": _spki(cs.OID_RSA + b"\x05\x01\x00", pk1),
        "extra after params": _spki(cs.OID_RSA + cs.NULL + cs.NULL, pk1),
        "non-minimal outer length": _spki(cs.OID_RSA + cs.NULL, pk1, form="long"),
        "non-minimal inner length": cs.tlv(0x30, cs.tlv(0x30, cs.OID_RSA + cs.NULL) + _long(0x03, b"\x00" + pk1)),
        "non-minimal pkcs1 length": _spki(cs.OID_RSA + cs.NULL, _long(0x30, cs.der_int(n) + cs.der_int(e))),
        "non-minimal length, bare pkcs1": _long(0x30, cs.der_int(n) + cs.der_int(e)),
        "indefinite length": b"\x30\x80" + canonical[4:] + b"\x00\x00",
        "trailing byte": canonical + b"\x00",
        "trailing byte, bare pkcs1": pk1 + b"\x00",
        "trailing in pkcs1": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n) + cs.der_int(e) + cs.NULL)),
        "leading zero in n": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n, b"\x00") + cs.der_int(e))),
        "leading zero in e": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n) + cs.der_int(e, b"\x00"))),
        "negative n": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.tlv(0x02, n.to_bytes(256, "big")) + cs.der_int(e))),
        "bitstring pad 1 over a set bit": _spki(cs.OID_RSA + cs.NULL, pk1, pad=1),
        "bitstring pad 8": _spki(cs.OID_RSA + cs.NULL, pk1, pad=8),
        "bitstring empty": cs.tlv(0x30, cs.tlv(0x30, cs.OID_RSA + cs.NULL) + b"\x03\x00"),
        "bitstring constructed": cs.tlv(0x30, cs.tlv(0x30, cs.OID_RSA + cs.NULL) + cs.tlv(0x23, cs.tlv(0x03, b"\x00" + pk1))),
        "e = 1": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n) + cs.der_int(1))),
        "e = 0": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n) + cs.der_int(0))),
        "e even": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n) + cs.der_int(65536))),
        "n 2047 bits": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int(n >> 1) + cs.der_int(e))),
        "n 16385 bits": _spki(cs.OID_RSA + cs.NULL, cs.tlv(0x30, cs.der_int((n << 14337) | 1) + cs.der_int(e))),
        "ec oid": _spki(cs.ALG_IDS["ec"], pk1),
        "empty": b"",
        "int only": cs.der_int(n),
    }
    assert set(v) == set(SPKI_CASES)
    return v


def test_rsa_key_encodings_agree(c: ModuleType, rsa_case) -> None:
    priv, msg, sig = rsa_case
    variants = _variants(priv)
    items = [(ALG_RSA_PSS_SHA256, key, msg, sig) for key in variants.values()]
    got_c, got_py = _both(c, items)
    assert _diff(items, got_c, got_py) == []
    assert dict(zip(variants, got_py)) == SPKI_CASES


def test_rsa_unusual_exponents_and_sizes_agree(c: ModuleType, rsa_case) -> None:
    priv, msg, _ = rsa_case
    keys = [
        rsa.generate_private_key(public_exponent=3, key_size=2048),
        cs.rsa_with_e(priv, (1 << 127) - 1),                  # a 127-bit prime exponent
        rsa.generate_private_key(public_exponent=65537, key_size=2049),
        rsa.generate_private_key(public_exponent=65537, key_size=3100),
    ]
    keys.append(cs.rsa_with_e(keys[-1], (1 << 89) - 1))      # > 3072 bits with a > 64-bit e
    items = []
    for k in keys:
        pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        sig = _sign(k, msg)
        items += [(ALG_RSA_PSS_SHA256, pub, msg, sig), (ALG_RSA_PSS_SHA256, pub, msg + b"!", sig),
                  (ALG_RSA_PSS_SHA256, pub, msg, sig[1:]), (ALG_RSA_PSS_SHA256, pub, msg, b"\x00" + sig)]
    got_c, got_py = _both(c, items)
    assert _diff(items, got_c, got_py) == []
    assert list(got_py[0:20:4]) == [1, 0, 1, 1, 0]  # exponents over 64 bits are refused


def test_raw_ecdsa_high_s_and_zero_components_agree(c: ModuleType) -> None:
    k = SigningKey.generate("ecdsa-p256")
    msg = b"edge"
    sig = k.sign(msg)
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    pub = k.public_key.public
    variants = [
        sig,
        r.to_bytes(32, "big") + (order - s).to_bytes(32, "big"),   # high-s twin: valid ECDSA
        bytes(32) + sig[32:], sig[:32] + bytes(32), bytes(64),
        order.to_bytes(32, "big") + sig[32:], sig[:32] + order.to_bytes(32, "big"),
        b"\xff" * 64, sig[::-1],
    ]
    items = [(ALG_ECDSA_P256_RAW, pub, msg, v) for v in variants]
    got_c, got_py = _both(c, items)
    assert _diff(items, got_c, got_py) == []
    assert got_c[0] == got_c[1] == 1


def test_input_layout_errors_raise_on_both(c: ModuleType) -> None:
    good = pack_batch([(ALG_ED25519, b"k" * 32, b"m", b"s" * 64)])
    bad_offsets = [
        (good.algs, good.keys, array("Q", [0, 33]), good.msgs, good.msg_offsets, good.sigs, good.sig_offsets),
        (good.algs, good.keys, array("Q", [0]), good.msgs, good.msg_offsets, good.sigs, good.sig_offsets),
        (good.algs, good.keys, good.key_offsets, good.msgs, array("Q", [1, 0]), good.sigs, good.sig_offsets),
    ]
    for args in bad_offsets:
        for backend in (c, PY):
            with pytest.raises(ValueError):
                backend.verify_batch(*args)
    for backend in (c, PY):
        with pytest.raises(ValueError):
            backend.verify_batch(*good.args(), nthreads=-1)


def test_empty_batch_and_buffer_types(c: ModuleType) -> None:
    empty = pack_batch([])
    assert c.verify_batch(*empty.args()) == PY.verify_batch(*empty.args()) == bytearray()
    k = SigningKey.from_seed(b"buffers")
    item = _signed("ed25519", k, b"")
    b = pack_batch([item, (ALG_ED25519, b"", b"", b"")])
    as_views = [memoryview(x) if isinstance(x, bytes) else x for x in b.args()]
    as_bytearrays = [bytearray(x) if isinstance(x, bytes) else x for x in b.args()]
    for args in (b.args(), as_views, as_bytearrays):
        assert c.verify_batch(*args) == PY.verify_batch(*args) == bytearray([1, 0])


def test_raw_verify_loop(c: ModuleType) -> None:
    k = SigningKey.from_seed(b"loop")
    alg, key, msg, sig = _signed("ed25519", k, b"x" * 100)
    assert c.raw_verify_loop(alg, key, msg, sig, 50) == 50
    assert c.raw_verify_loop(alg, key, msg, _flip(sig, 3), 50) == 0
    e = SigningKey.generate("ecdsa-p256")
    assert c.raw_verify_loop(*_signed("ecdsa-p256", e, b"y"), 20) == 20


def test_p256_key_encodings_agree(c: ModuleType) -> None:
    k = SigningKey.generate("ecdsa-p256")
    msg = b"points"
    sig = k.sign(msg)
    pub = k.public_key.public
    x, y = pub[1:33], pub[33:]
    p = 2**256 - 2**224 + 2**192 + 2**96 - 1
    comp = bytes([2 + (y[-1] & 1)]) + x
    hybrid = bytes([6 + (y[-1] & 1)]) + x + y
    keys = {
        "uncompressed": (pub, 1),
        "compressed": (comp, 0),                      # the same key; not the accepted encoding
        "compressed, other parity": (bytes([comp[0] ^ 1]) + x, 0),
        "hybrid": (hybrid, 0),                        # OpenSSL would take it; cryptography refuses
        "no prefix": (x + y, 0),
        "x = p (uncompressed)": (b"\x04" + p.to_bytes(32, "big") + y, 0),
        "x = p (compressed)": (b"\x02" + p.to_bytes(32, "big"), 0),
        "off curve": (pub[:-1] + bytes([pub[-1] ^ 1]), 0),
        "all zero": (b"\x04" + bytes(64), 0),
        "infinity": (b"\x00", 0),
        "one byte": (b"\x04", 0),
        "trailing byte": (pub + b"\x00", 0),
        "truncated": (pub[:-1], 0),
        "compressed + trailing": (comp + b"\x00", 0),
    }
    items = [(ALG_ECDSA_P256_RAW, key, msg, sig) for key, _ in keys.values()]
    items += [(ALG_ECDSA_P256_DER, key, msg, raw_to_der(sig)) for key, _ in keys.values()]
    got_c, got_py = _both(c, items)
    assert _diff(items, got_c, got_py) == []
    expected = [v for _, v in keys.values()]
    assert list(got_py) == expected + expected


def test_key_cache_eviction_and_reuse(c: ModuleType) -> None:
    # More distinct keys than a thread's cache holds, cycled, with each key's twin that
    # differs in one bit right behind it: a stale cache entry would show up here.
    items = []
    signers = [SigningKey.generate("ecdsa-p256") for _ in range(11)]
    for round_ in range(3):
        for k in signers:
            alg, key, msg, sig = _signed("ecdsa-p256", k, bytes([round_]))
            items += [(alg, key, msg, sig), (alg, _flip(key, 300 + round_), msg, sig), (alg, key, msg, sig)]
    got_c, got_py = _both(c, items, nthreads=1)
    assert _diff(items, got_c, got_py) == []
    assert list(got_c[0::3]) == list(got_c[2::3]) == [1] * 33
