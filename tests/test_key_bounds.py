"""Key validation, time ranges and the work one event may cause (the edges of the
event limits themselves are in ``test_limits.py``).

Both crypto backends must refuse exactly the same keys (``core/keyparse.py`` and the
compiled parser in ``verifier/_cverify.pyx``), every integer the fold accepts fits in
int64 (so the two evaluation engines compare the same numbers), and the batch
pre-check never does signature work for keys or envelopes the fold would refuse.
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import crypto_strategies as cs
from sim import FAR, Sim, key
from trustlog.core import keyparse
from trustlog.core.bounds import INT64_MAX, INT64_MIN
from trustlog.core.errors import InvalidKeyError
from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated, Signature, TagDeleted,
    sign_event,
)
from trustlog.core.keys import ALG_ED25519, ALG_RSA_PSS_SHA256, RSA_PSS_SALT_LEN, PublicKey, validate_public_key
from trustlog.core.state import RejectedEventError, TrustState
from trustlog.ingest import precheck
from trustlog.verifier.batch import BatchVerifier

R1, T1 = key("bounds-root"), key("bounds-targets")
MSG = b"bounds"


def _spki(n: int, e: int) -> bytes:
    return keyparse.rsa_spki(n, e)


def _rsa_sig(priv: rsa.RSAPrivateKey, msg: bytes = MSG) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return priv.sign(msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=RSA_PSS_SALT_LEN), hashes.SHA256())


@pytest.fixture(scope="module")
def rsa_rows() -> dict[str, tuple[bytes, bytes, int]]:
    """name -> (key, signature on MSG, expected verdict on every backend)."""
    base = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = base.public_key().public_numbers().n
    rows: dict[str, tuple[bytes, bytes, int]] = {"2048 bits, e = 65537": (_spki(n, 65537), _rsa_sig(base), 1)}
    for bits, ok in ((2047, 0), (4096, 1), (4098, 0)):
        k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        kn = k.public_key().public_numbers().n
        assert kn.bit_length() == bits
        rows[f"{bits} bits"] = (_spki(kn, 65537), _rsa_sig(k), ok)
    rows["4097 bits (no signature)"] = (_spki((1 << 4096) | 1, 65537), _rsa_sig(base), 0)
    k3 = rsa.generate_private_key(public_exponent=3, key_size=2048)
    rows["e = 3"] = (_spki(k3.public_key().public_numbers().n, 3), _rsa_sig(k3), 1)
    for name, e, ok in (("e of 64 bits", 2**64 - 59, 1), ("e of 65 bits", 2**64 + 13, 0)):  # both prime
        k = cs.rsa_with_e(base, e)
        assert k is not None, name
        rows[name] = (_spki(n, e), _rsa_sig(k), ok)
    em = cs.emsa_pss_encode(MSG, n.bit_length() - 1, b"\x11" * 32).rjust(256, b"\0")
    rows["e = 1, the PSS encoding as signature"] = (_spki(n, 1), em, 0)
    for name, e in (("e = 0", 0), ("e = 2", 2), ("e even", 65536), ("e = n", n), ("e = n - 2", n - 2), ("e > n", n + 2)):
        rows[name] = (_spki(n, e), _rsa_sig(base), 0)
    rows["n even"] = (_spki(n - 1, 65537), _rsa_sig(base), 0)
    return rows


def test_rsa_bounds_on_both_backends(crypto, rsa_rows) -> None:
    items = [(ALG_RSA_PSS_SHA256, k, MSG, sig) for k, sig, _ in rsa_rows.values()]
    got = dict(zip(rsa_rows, crypto(items)))
    assert got == {name: ok for name, (_, _, ok) in rsa_rows.items()}


def test_rsa_bounds_in_the_fold(rsa_rows) -> None:
    for name, (k, _, ok) in rsa_rows.items():
        pk = PublicKey("rsa-pss-sha256", k)
        if ok:
            assert validate_public_key(pk) == pk, name
        else:
            with pytest.raises(InvalidKeyError):
                validate_public_key(pk)


def test_the_compiled_parser_uses_the_same_bounds() -> None:
    from conftest import require_compiled_verifier

    require_compiled_verifier()
    from trustlog.verifier import _cverify
    assert _cverify.KEY_BOUNDS == {
        "RSA_MIN_BITS": keyparse.RSA_MIN_BITS, "RSA_MAX_BITS": keyparse.RSA_MAX_BITS,
        "RSA_MAX_EXPONENT_BITS": keyparse.RSA_MAX_EXPONENT_BITS, "RSA_PSS_SALT_LEN": RSA_PSS_SALT_LEN,
        "P256_LEN": keyparse.P256_LEN,
    }


def _ed_noncanonical_one() -> bytes:
    return (1 + cs.ED_P).to_bytes(32, "little")  # y = 1 + p: the identity, non-canonical


ED_ROWS = {
    "a key": (key("bounds-ed").public_key.public, True),
    "the negated key -A": (key("bounds-ed").public_key.public[:31] + bytes([key("bounds-ed").public_key.public[31] ^ 0x80]), True),
    "y >= p (non-canonical identity)": (_ed_noncanonical_one(), False),
    "identity with the sign bit": (bytes([1]) + bytes(30) + b"\x80", False),
    "mixed order A + T": (cs.sodium.crypto_core_ed25519_add(key("bounds-ed").public_key.public, cs.ED_TORSION[0]), False),
    "y = 2 (no point of the subgroup)": (bytes([2]) + bytes(31), False),
    **{f"small order #{i}": (t, False) for i, t in enumerate(cs.ED_TORSION)},
}


@pytest.mark.parametrize("name", list(ED_ROWS))
def test_ed25519_keys_the_fold_accepts(name: str) -> None:
    public, ok = ED_ROWS[name]
    pk = PublicKey("ed25519", public)
    if ok:
        assert validate_public_key(pk) == pk
    else:
        with pytest.raises(InvalidKeyError):
            validate_public_key(pk)


def test_ed25519_mixed_order_key_verifies_in_libsodium_on_both_backends_but_the_fold_refuses_it(crypto) -> None:
    # libsodium does not check the subgroup of a public key; both backends run it, so
    # they agree, and the fold keeps such keys out of every state.
    public, msg, sig = cs.material().ed_mixed[0]
    assert crypto([(ALG_ED25519, public, msg, sig)])[0] == 1
    s = Sim(crypto=crypto)
    ev = RepoCreated(s.repo, 1, 0, [R1.public_key], 1, [PublicKey("ed25519", public)], 1, FAR)
    assert s.submit(sign_event(ev, [R1])) == "INVALID_KEYS"


P256 = key("bounds-p256", "ecdsa-p256").public_key.public


@pytest.mark.parametrize(("name", "public", "ok"), [
    ("uncompressed", P256, True),
    ("compressed", bytes([2 + (P256[-1] & 1)]) + P256[1:33], False),
    ("hybrid", bytes([6 + (P256[-1] & 1)]) + P256[1:], False),
    ("leading zero", b"\0" + P256, False),
    ("x = p", b"\x04" + cs.P256_P.to_bytes(32, "big") + P256[33:], False),
    ("off the curve", P256[:-1] + bytes([P256[-1] ^ 1]), False),
    ("infinity", b"\x00", False),
])
def test_p256_keys_the_fold_accepts(name: str, public: bytes, ok: bool) -> None:
    s = Sim()
    ev = RepoCreated(s.repo, 1, 0, [R1.public_key], 1, [PublicKey("ecdsa-p256", public)], 1, FAR)
    assert s.submit(sign_event(ev, [R1])) == ("OK" if ok else "INVALID_KEYS")


# --- integers outside int64 ------------------------------------------------------------

REPO = "registry.example.com/team/app"
DIG = "sha256:" + "ab" * 32
EVENTS = {
    RepoCreated: lambda **v: RepoCreated(REPO, v.get("version", 1), v.get("issued_at", 0), [R1.public_key],
                                         v.get("root_threshold", 1), [T1.public_key], v.get("targets_threshold", 1),
                                         v.get("expires", FAR)),
    RootRotated: lambda **v: RootRotated(REPO, v.get("version", 2), v.get("issued_at", 0), [R1.public_key],
                                         v.get("root_threshold", 1), v.get("expires", FAR)),
    RoleKeysSet: lambda **v: RoleKeysSet(REPO, v.get("version", 2), v.get("issued_at", 0), "targets", [T1.public_key],
                                         v.get("threshold", 1), v.get("expires", FAR)),
    RoleRemoved: lambda **v: RoleRemoved(REPO, v.get("version", 2), v.get("issued_at", 0), "targets/x"),
    KeyCompromised: lambda **v: KeyCompromised(REPO, v.get("version", 2), v.get("issued_at", 0), T1.keyid,
                                               v.get("since", 0)),
    ImageSigned: lambda **v: ImageSigned(REPO, v.get("version", 2), v.get("issued_at", 0), "targets", "v1", DIG,
                                         v.get("size", 1), v.get("expires", FAR)),
    TagDeleted: lambda **v: TagDeleted(REPO, v.get("version", 2), v.get("issued_at", 0), "targets", "v1"),
}
INT_FIELDS = [(cls, f) for cls, make in EVENTS.items() for f in make().__struct_fields__
              if type(getattr(make(), f)) is int]


@pytest.mark.parametrize(("cls", "field"), INT_FIELDS, ids=[f"{c.__name__}.{f}" for c, f in INT_FIELDS])
@pytest.mark.parametrize("value", [INT64_MAX + 1, 2**64 - 1])  # MessagePack carries no int below -2**63
def test_every_integer_field_outside_int64_is_refused_at_the_fold(cls, field: str, value: int) -> None:
    st = TrustState()
    env = sign_event(EVENTS[cls](**{field: value}), [R1])
    with pytest.raises(RejectedEventError) as e:
        st.apply(env, log_time=1, offset=0)
    assert e.value.reason == "INVALID_FIELD"
    assert field in e.value.message and "int64" in e.value.message


@pytest.mark.parametrize(("ref", "expected"), [(INT64_MAX - 1, "VALID"), (INT64_MAX, "EXPIRED")])
def test_reference_times_near_2_63_give_the_same_verdict_on_both_engines(crypto, ref: int, expected: str) -> None:
    s = Sim(crypto=crypto)
    assert s.create([R1], [T1], expires=INT64_MAX) == "OK"
    assert s.sign_tag("v1", [T1], expires=INT64_MAX) == "OK"
    assert s.verify("v1", ref_time=ref) == expected


@pytest.mark.parametrize("ref", [INT64_MAX + 1, INT64_MIN - 1])
def test_a_reference_time_outside_int64_is_refused(crypto, ref: int) -> None:
    s = Sim(crypto=crypto)
    assert s.create([R1], [T1]) == "OK"
    with pytest.raises(ValueError, match="int64"):
        BatchVerifier(s.state, ref_time=ref, crypto=crypto)


# --- the work one event may cause (the limits' own edges: test_limits.py) ----------------

def _created_with(keys: list[PublicKey]) -> RepoCreated:
    return RepoCreated(REPO, 1, 0, keys, 1, [T1.public_key], 1, FAR)


def test_an_event_with_one_invalid_key_introduces_none_and_costs_no_signature_work(rsa_rows) -> None:
    bad = PublicKey("rsa-pss-sha256", rsa_rows["e = 1, the PSS encoding as signature"][0])
    ev = _created_with([R1.public_key, bad])
    env = sign_event(ev, [R1])
    env = Envelope(env.payload, env.signatures + [Signature(bad.keyid, rsa_rows["e = 1, the PSS encoding as signature"][1])])
    assert precheck.introduced_keys(ev) == []
    assert precheck.plan(TrustState(), [(env, ev)], {}, set()) == ([], [])
    with pytest.raises(RejectedEventError) as e:
        TrustState().apply(env, log_time=1, offset=0)
    assert e.value.reason == "INVALID_KEYS"


@pytest.mark.parametrize("text", ["9223372036854775808", "9999-01-01T00:00:00Z", "ns:99999999999999999999"])
def test_command_line_times_outside_int64_are_bad_input(text: str) -> None:
    from trustlog.cli.times import parse_time
    from trustlog.core.errors import InputError

    with pytest.raises(InputError, match="outside"):
        parse_time(text)
    assert parse_time(str(INT64_MAX)) == INT64_MAX


def test_a_time_outside_int64_in_a_state_the_fold_did_not_build_gives_error_never_a_clamped_verdict(crypto) -> None:
    s = Sim(crypto=crypto)
    assert s.create([R1], [T1]) == "OK"
    assert s.sign_tag("v1", [T1]) == "OK"
    tags = s.state.repos[s.repo].tags
    e = tags["v1"]
    e.expires = INT64_MAX + 10
    tags["v1"] = e          # a compact store hands out copies (and keeps this one verbatim)
    # The compiled engine cannot hold the value and fails closed; the reference compares
    # exact integers. The fold never builds such a state (see above).
    from sim import NOW
    from trustlog.core.evaluate import Request

    v = BatchVerifier(s.state, ref_time=NOW, crypto=crypto)
    assert v.verify_all([Request(s.repo, "v1", None)])[0].code == ("ERROR" if v.engine == "c" else "VALID")
