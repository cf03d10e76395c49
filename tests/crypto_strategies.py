"""Structure-aware hypothesis strategies for keys and signatures of every key type.

Shared by ``tests/test_crypto_fuzz.py`` (a few hundred examples in the suite) and
``scripts/fuzz_crypto_differential.py`` (a million inputs, outside CI time). Each item
is ``(alg, public_key, message, signature)`` as the batch verifiers take it. Items are
built from their parts rather than from random bytes, so that most of them get deep
into the parsers: DER with every length form, OIDs and parameters, BIT STRING padding,
integer paddings and the bounds on RSA moduli and exponents (e = 1 with the PSS
encoding as the "signature" among them); P-256 points in every SEC1 form, off the curve,
with coordinates >= p; Ed25519 points that are non-canonical, of small or mixed order,
with non-canonical S; signatures of every length near the right one. Then, sometimes,
a byte-level mutation on top.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache

import nacl.bindings as sodium
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import strategies as st

from der_blocks import (  # noqa: F401  (re-exported: the tests read them as cs.*)
    ALG_IDS, NULL, OID_EC, OID_PSS, OID_RSA, PSS_PARAMS, SHA256_ALG, der_int, der_len, tlv,
)

from trustlog.core.keys import (
    ALG_ECDSA_P256_DER, ALG_ECDSA_P256_RAW, ALG_ED25519, ALG_RSA_PSS_SHA256, SigningKey, der_to_raw, raw_to_der,
)

Item = tuple[int, bytes, bytes, bytes]
ALG_CODES = (0, ALG_ED25519, ALG_ECDSA_P256_RAW, ALG_ECDSA_P256_DER, ALG_RSA_PSS_SHA256, 5, 255)
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED_P = 2**255 - 19
ED_L = 2**252 + 27742317777372353535851937790883648493
# The eight small-order points of edwards25519 (canonical encodings), one of order 8 first.
ED_TORSION = tuple(bytes.fromhex(h) for h in (
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
))
MESSAGES = (b"", b"m", b"trustlog fuzz message", bytes(range(256)))


# --- material: real keys and signatures, made once per process ----------------------

def emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """RFC 8017 EMSA-PSS-ENCODE with SHA-256 and MGF1-SHA-256."""
    m_hash = hashlib.sha256(msg).digest()
    em_len = (em_bits + 7) // 8
    h = hashlib.sha256(b"\0" * 8 + m_hash + salt).digest()
    db = b"\0" * (em_len - len(salt) - 32 - 2) + b"\x01" + salt
    mask = b"".join(hashlib.sha256(h + i.to_bytes(4, "big")).digest() for i in range((len(db) + 31) // 32))[:len(db)]
    masked = bytearray(a ^ b for a, b in zip(db, mask))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked) + h + b"\xbc"


def rsa_with_e(base: rsa.RSAPrivateKey, e: int) -> rsa.RSAPrivateKey | None:
    pn = base.private_numbers()
    p, q = pn.p, pn.q
    try:
        d = pow(e, -1, (p - 1) * (q - 1))
    except ValueError:
        return None
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    ).private_key(unsafe_skip_rsa_key_validation=True)


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int
    priv: rsa.RSAPrivateKey | None

    def sign(self, msg: bytes) -> bytes:
        """A signature made once per (key, message): hypothesis needs draws to replay."""
        return _signed(self, msg)


@dataclass(frozen=True)
class Material:
    rsa: tuple[RsaKey, ...]
    ed: tuple[SigningKey, ...]
    ec: tuple[SigningKey, ...]
    ed_mixed: tuple[tuple[bytes, bytes, bytes], ...]   # (A + T, message, signature by A's holder)


def ed25519_scalar(seed: bytes) -> int:
    """The secret scalar (mod L) of ``SigningKey.from_seed(seed)``'s Ed25519 key."""
    h = hashlib.sha512(hashlib.sha256(seed).digest()).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return int.from_bytes(a, "little") % ED_L


def ed25519_sign_scalar(a: int, public: bytes, msg: bytes) -> bytes:
    """An Ed25519 signature by scalar ``a`` for the point ``public`` (= [a]B), e.g. the
    negated key -A, which the holder of A controls too."""
    r = int.from_bytes(hashlib.sha512(b"nonce" + a.to_bytes(32, "little") + msg).digest(), "little") % ED_L
    R = sodium.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
    k = int.from_bytes(hashlib.sha512(R + public + msg).digest(), "little") % ED_L
    return R + ((r + k * a) % ED_L).to_bytes(32, "little")


def _ed_sign_mixed(seed: bytes, msg: bytes) -> tuple[bytes, bytes, bytes]:
    """A signature valid under A + T (T of order 8) made by the holder of A: grind the
    nonce until the challenge is a multiple of 8, so that it kills T."""
    h = hashlib.sha512(seed).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    a_int = int.from_bytes(a, "little") % ED_L
    A = sodium.crypto_scalarmult_ed25519_base_noclamp(a_int.to_bytes(32, "little"))
    A2 = sodium.crypto_core_ed25519_add(A, ED_TORSION[0])
    for i in range(10_000):
        r = int.from_bytes(hashlib.sha512(seed + i.to_bytes(4, "little") + msg).digest(), "little") % ED_L
        R = sodium.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
        k = int.from_bytes(hashlib.sha512(R + A2 + msg).digest(), "little") % ED_L
        if k % 8 == 0:
            s = (r + k * a_int) % ED_L
            return A2, msg, R + s.to_bytes(32, "little")
    raise AssertionError("no nonce found")  # pragma: no cover - 1 in 8 succeeds


_SIGS: dict[tuple[int, bytes], bytes] = {}


def _signed(k: RsaKey | SigningKey, msg: bytes) -> bytes:
    ck = (id(k), msg)
    sig = _SIGS.get(ck)
    if sig is None:
        if isinstance(k, RsaKey):  # also keys SigningKey refuses (exponents over 64 bits)
            assert k.priv is not None
            sig = k.priv.sign(msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        else:
            sig = k.sign(msg)
        sig = _SIGS[ck] = sig
    return sig


@cache
def material() -> Material:
    base = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [base]
    if os.environ.get("TRUSTLOG_FUZZ_BIG_RSA", "1") == "1":
        keys.append(rsa.generate_private_key(public_exponent=65537, key_size=4096))
    rsa_keys = [RsaKey(k.public_key().public_numbers().n, k.public_key().public_numbers().e, k) for k in keys]
    for e in (3, 2**64 - 59, 2**64 + 13, (1 << 127) - 1):  # odd exponents at and over 64 bits
        k = rsa_with_e(base, e)
        if k is not None:
            rsa_keys.append(RsaKey(base.public_key().public_numbers().n, e, k))
    ed = tuple(SigningKey.from_seed(b"fuzz-ed-%d" % i) for i in range(2))
    ec = (SigningKey.generate("ecdsa-p256"), SigningKey.generate("ecdsa-p256-der"))
    mixed = tuple(_ed_sign_mixed(b"fuzz-mixed-%d" % i, m) for i, m in enumerate(MESSAGES[:2]))
    return Material(tuple(rsa_keys), ed, ec, mixed)


# --- mutations ----------------------------------------------------------------------

@st.composite
def mutate_bytes(draw: st.DrawFn, value: bytes) -> bytes:
    op = draw(st.sampled_from(["none", "none", "none", "none", "flip", "truncate", "extend", "insert", "delete", "set"]))
    if op == "none" or (not value and op in ("flip", "delete", "set")):
        return value
    i = draw(st.integers(0, max(0, len(value) - 1)))
    if op == "flip":
        out = bytearray(value)
        out[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if op == "truncate":
        return value[:i]
    if op == "extend":
        return value + draw(st.binary(min_size=1, max_size=3))
    if op == "insert":
        return value[:i] + draw(st.binary(min_size=1, max_size=2)) + value[i:]
    if op == "delete":
        return value[:i] + value[i + 1:]
    out = bytearray(value)
    out[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF]))
    return bytes(out)


# --- RSA ----------------------------------------------------------------------------

@st.composite
def rsa_key_bytes(draw: st.DrawFn, n: int, e: int) -> bytes:
    n_pad = draw(st.sampled_from([b"", b"", b"", b"\0", b"\xff"]))
    e_pad = draw(st.sampled_from([b"", b"", b"", b"\0"]))
    form = lambda: draw(st.sampled_from(["minimal"] * 6 + ["long", "indefinite"]))  # noqa: E731
    pkcs1 = tlv(0x30, der_int(n, n_pad, form()) + der_int(e, e_pad, form())
                + draw(st.sampled_from([b""] * 6 + [NULL, b"\0"])), form())
    shape = draw(st.sampled_from(["spki"] * 8 + ["pkcs1", "bitstring-constructed"]))
    if shape == "pkcs1":
        return pkcs1
    alg_id = ALG_IDS[draw(st.sampled_from(["rsa+null"] * 6 + list(ALG_IDS)))]
    pad = draw(st.sampled_from([0] * 8 + [1, 7, 8]))
    bits = tlv(0x03, bytes([pad]) + pkcs1, form())
    if shape == "bitstring-constructed":
        bits = tlv(0x23, bits)
    trailing = draw(st.sampled_from([b""] * 8 + [b"\0", NULL]))
    return tlv(0x30, tlv(0x30, alg_id, form()) + bits, form()) + trailing


@st.composite
def rsa_item(draw: st.DrawFn) -> Item:
    mat = material()
    k = draw(st.sampled_from(mat.rsa))
    msg = draw(st.sampled_from(MESSAGES))
    n, e = k.n, k.e
    sig_kind = "real"
    choice = draw(st.sampled_from(["same"] * 6 + ["e", "n"]))
    if choice == "e":
        e = draw(st.sampled_from([0, 1, 2, 3, 5, 65536, 65537, 2**64 - 1, 2**64 + 1, n - 1, n, n + 2, n - 2]))
        sig_kind = draw(st.sampled_from(["real", "em"]))
    elif choice == "n":
        n = draw(st.sampled_from([n >> 1, n << 1, n | (1 << (n.bit_length())), (n << 2049) | 1, n + 2, n ^ 1]))
    der = draw(rsa_key_bytes(n, e))
    if sig_kind == "em" or (e == 1 and draw(st.booleans())):
        # e = 1: the "signature" is the PSS encoding itself (s^1 = s = EM).
        sig = emsa_pss_encode(msg, n.bit_length() - 1, draw(st.binary(min_size=32, max_size=32)))
        sig = sig.rjust((n.bit_length() + 7) // 8, b"\0")
    elif k.priv is not None:
        sig = k.sign(msg) if draw(st.integers(0, 3)) else k.sign(msg + b"?")
    else:  # pragma: no cover - every key has a private half
        sig = b""
    sig = draw(st.sampled_from([sig] * 6 + [sig[1:], b"\0" + sig, sig + b"\0", b"", bytes(len(sig)),
                                            ((n + 1) % 2 ** (8 * len(sig))).to_bytes(len(sig), "big")]))
    return (ALG_RSA_PSS_SHA256, draw(mutate_bytes(der)), msg, draw(mutate_bytes(sig)))


# --- P-256 --------------------------------------------------------------------------

@st.composite
def p256_key_bytes(draw: st.DrawFn, pub: bytes) -> bytes:
    x, y = pub[1:33], pub[33:]
    xi, yi = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    par = y[-1] & 1
    forms = {
        "uncompressed": pub, "compressed": bytes([2 + par]) + x, "compressed-other": bytes([3 - par]) + x,
        "hybrid": bytes([6 + par]) + x + y, "raw64": x + y, "negated": b"\x04" + x + (P256_P - yi).to_bytes(32, "big"),
        "x+p": b"\x04" + (xi + P256_P).to_bytes(33, "big")[-32:] + y if xi + P256_P < 2**256 else b"\x04" + x + y,
        "y+p": b"\x04" + x + (yi + P256_P).to_bytes(33, "big")[-32:] if yi + P256_P < 2**256 else pub,
        "x=p": b"\x04" + P256_P.to_bytes(32, "big") + y, "infinity": b"\x00", "zero": b"\x04" + bytes(64),
        "leading-zero": b"\x00" + pub, "spki": tlv(0x30, tlv(0x30, ALG_IDS["ec"]) + tlv(0x03, b"\0" + pub)),
        "off-curve": pub[:-1] + bytes([pub[-1] ^ 1]), "prefix-only": b"\x04",
    }
    return forms[draw(st.sampled_from(["uncompressed"] * 8 + list(forms)))]


@st.composite
def p256_item(draw: st.DrawFn) -> Item:
    k = draw(st.sampled_from(material().ec))
    msg = draw(st.sampled_from(MESSAGES))
    raw = _signed(k, msg) if k.keytype == "ecdsa-p256" else der_to_raw(_signed(k, msg))
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    r, s = draw(st.sampled_from([(r, s)] * 6 + [(r, P256_N - s), (0, s), (r, 0), (P256_N, s), (r, P256_N),
                                               (r + P256_N, s), (r, s + P256_N), (P256_P, s), (1, 1)]))
    alg = draw(st.sampled_from([ALG_ECDSA_P256_RAW, ALG_ECDSA_P256_DER]))
    if alg == ALG_ECDSA_P256_RAW:
        sig = (r % 2**256).to_bytes(32, "big") + (s % 2**256).to_bytes(32, "big")
    else:
        pad = draw(st.sampled_from([b""] * 6 + [b"\0"]))
        form = draw(st.sampled_from(["minimal"] * 6 + ["long", "indefinite"]))
        sig = tlv(0x30, der_int(r, pad) + der_int(s) + draw(st.sampled_from([b""] * 6 + [b"\0"])), form)
        if draw(st.integers(0, 9)) == 5:
            sig = raw_to_der(raw) + b"\0"
    key = draw(p256_key_bytes(k.public_key.public))
    return (alg, draw(mutate_bytes(key)), msg, draw(mutate_bytes(sig)))


# --- Ed25519 ------------------------------------------------------------------------

def _ed_noncanonical(pub: bytes) -> bytes:
    y = int.from_bytes(pub, "little") & (2**255 - 1)
    if y + ED_P < 2**255:
        return ((y + ED_P) | (int.from_bytes(pub, "little") & 2**255)).to_bytes(32, "little")
    return pub


@st.composite
def ed25519_item(draw: st.DrawFn) -> Item:
    mat = material()
    if draw(st.integers(0, 7)) == 3:
        key, msg, sig = draw(st.sampled_from(mat.ed_mixed))  # valid under a mixed-order key
    else:
        k = draw(st.sampled_from(mat.ed))
        msg = draw(st.sampled_from(MESSAGES))
        sig = k.sign(msg)
        key = k.public_key.public
        form = draw(st.sampled_from(["canonical"] * 8 + ["sign", "small", "noncanonical", "mixed"]))
        if form == "sign":
            key = key[:31] + bytes([key[31] ^ 0x80])
        elif form == "small":
            key = _ed_noncanonical(draw(st.sampled_from(ED_TORSION)))
        elif form == "noncanonical":
            key = _ed_noncanonical(draw(st.sampled_from(ED_TORSION + (key,))))
        elif form == "mixed":
            key = sodium.crypto_core_ed25519_add(key, draw(st.sampled_from(ED_TORSION[:1] + ED_TORSION[5:])))
    s_int = int.from_bytes(sig[32:], "little")
    s_form = draw(st.sampled_from(["same"] * 8 + ["s+l", "s=0", "small-r", "high-bit"]))
    if s_form == "s+l" and s_int + ED_L < 2**256:
        sig = sig[:32] + (s_int + ED_L).to_bytes(32, "little")
    elif s_form == "s=0":
        sig = sig[:32] + bytes(32)
    elif s_form == "small-r":
        sig = draw(st.sampled_from(ED_TORSION)) + sig[32:]
    elif s_form == "high-bit":
        sig = sig[:63] + bytes([sig[63] | 0x80])
    return (ALG_ED25519, draw(mutate_bytes(key)), msg, draw(mutate_bytes(sig)))


# --- everything, and cross-type confusion --------------------------------------------

@st.composite
def crypto_item(draw: st.DrawFn) -> Item:
    alg, key, msg, sig = draw(st.one_of(rsa_item(), p256_item(), ed25519_item()))
    if draw(st.integers(0, 15)) == 7:
        alg = draw(st.sampled_from(ALG_CODES))
    return (alg, key, msg, sig)



def byte_variants(item: Item, rng, k: int) -> list[Item]:
    """``item`` and ``k - 1`` quick byte-level variants of its key or signature (flip,
    truncate, extend, insert, delete, set a byte), drawn from ``rng``: cheap inputs
    around each structured one, for runs of a million."""
    out = [item]
    alg, key, msg, sig = item
    for _ in range(k - 1):
        which = rng.randrange(3)
        value = key if which == 0 else sig if which == 1 else msg
        op = rng.randrange(6)
        i = rng.randrange(len(value)) if value else 0
        if op == 0 and value:
            b = bytearray(value)
            b[i] ^= 1 << rng.randrange(8)
            value = bytes(b)
        elif op == 1:
            value = value[:i]
        elif op == 2:
            value = value + rng.randbytes(rng.randrange(1, 4))
        elif op == 3:
            value = value[:i] + rng.randbytes(1) + value[i:]
        elif op == 4 and value:
            value = value[:i] + value[i + 1:]
        elif value:
            b = bytearray(value)
            b[i] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF))
            value = bytes(b)
        out.append((alg, value, msg, sig) if which == 0 else (alg, key, msg, value) if which == 1 else (alg, key, value, sig))
    return out
