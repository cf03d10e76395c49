"""Key identity comes from the mathematical key, for every key type and every alias.

Two kinds of alias exist:

* another *encoding* of the same key (RSA in PKCS#1, SubjectPublicKeyInfo without
  parameters or with the id-RSASSA-PSS OID; a compressed P-256 point): the fold refuses
  it, both verifiers treat it as invalid, and its key material is still the key's;
* another *key* that the same holder controls (the same P-256 key under the other
  label, the negated point -Q or -A, an RSA key with the same modulus and another
  exponent): accepted as a key, but it has the same key material, so it counts once
  and one compromise report takes both down.

Each rule runs over every alias of every key type, on both crypto backends (and so on
both evaluation engines).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import crypto_strategies as cs
from sim import FAR, Sim, key
from trustlog.core.events import Envelope, ImageSigned, RepoCreated, Signature, encode_event, sign_event
from trustlog.core.keys import PublicKey, SigningKey, key_material_id, validate_public_key
from trustlog.core.state import RejectedEventError, count_signers

R1 = key("id-root")
T1 = key("id-targets")
Z = key("id-genuine-second")


@dataclass(frozen=True)
class Alias:
    public: PublicKey
    signer: _Signer | None   # signs as the alias key, when the alias is a key of its own
    accepted: bool             # True: a key the fold accepts (another key of the same holder)


class _Signer:
    """Signs for an alias key with the holder's secret (a SigningKey look-alike)."""

    def __init__(self, public: PublicKey, sign) -> None:
        self.public_key = public
        self.keyid = public.keyid
        self.keytype = public.keytype
        self.sign = sign


KEYS = {
    "ed25519": key("id-ed"),
    "ecdsa-p256": key("id-p256", "ecdsa-p256"),
    "ecdsa-p256-der": key("id-p256-der", "ecdsa-p256-der"),
    "rsa-pss-sha256": key("id-rsa", "rsa-pss-sha256"),
}


def _aliases(kt: str) -> dict[str, Alias]:
    k = KEYS[kt]
    pub = k.public_key.public
    out: dict[str, Alias] = {}
    if kt == "ed25519":
        a = cs.ed25519_scalar(b"id-ed")
        neg = PublicKey(kt, pub[:31] + bytes([pub[31] ^ 0x80]))
        out["negated point -A"] = Alias(neg, _Signer(neg, lambda m: cs.ed25519_sign_scalar(cs.ED_L - a, neg.public, m)), True)
    elif kt.startswith("ecdsa-p256"):
        other = "ecdsa-p256-der" if kt == "ecdsa-p256" else "ecdsa-p256"
        twin = SigningKey(other, k.private)
        out["the other P-256 label"] = Alias(twin.public_key, twin, True)
        d = k.private.private_numbers().private_value
        neg = SigningKey(kt, ec.derive_private_key(cs.P256_N - d, ec.SECP256R1()))
        out["negated point -Q"] = Alias(neg.public_key, neg, True)
        comp = k.private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        out["compressed point"] = Alias(PublicKey(kt, comp), None, False)
    else:
        nums = k.private.public_key().public_numbers()
        pkcs1 = cs.tlv(0x30, cs.der_int(nums.n) + cs.der_int(nums.e))
        spki = lambda alg_id: cs.tlv(0x30, cs.tlv(0x30, alg_id) + cs.tlv(0x03, b"\0" + pkcs1))  # noqa: E731
        assert spki(cs.ALG_IDS["rsa+null"]) == pub
        for name, der in {
            "PKCS#1 RSAPublicKey": pkcs1,
            "SPKI without parameters": spki(cs.ALG_IDS["rsa"]),
            "SPKI with the id-RSASSA-PSS OID": spki(cs.ALG_IDS["pss"]),
            "SPKI with id-RSASSA-PSS parameters": spki(cs.ALG_IDS["pss+params"]),
        }.items():
            out[name] = Alias(PublicKey(kt, der), None, False)
        priv = next(p for p in (cs.rsa_with_e(k.private, e) for e in (3, 5, 17, 257, 65539, 65543)) if p is not None)
        other_e = SigningKey(kt, priv)
        out["same modulus, another e"] = Alias(other_e.public_key, other_e, True)
    return out


CASES = [(kt, name) for kt in KEYS for name in _aliases(kt)]
ALIASES = {kt: _aliases(kt) for kt in KEYS}


def _alias(kt: str, name: str) -> Alias:
    return ALIASES[kt][name]


@pytest.mark.parametrize(("kt", "name"), CASES)
def test_every_alias_has_the_key_material_of_the_key(kt: str, name: str) -> None:
    alias = _alias(kt, name)
    assert alias.public.keyid != KEYS[kt].keyid
    assert key_material_id(alias.public) == key_material_id(KEYS[kt].public_key)


@pytest.mark.parametrize(("kt", "name"), [c for c in CASES if not _alias(*c).accepted])
def test_the_fold_and_both_verifiers_refuse_another_encoding(crypto, kt: str, name: str) -> None:
    alias = _alias(kt, name).public
    assert validate_public_key(alias) == KEYS[kt].public_key  # normalised: what to re-encode to
    assert Sim(crypto=crypto).submit(_created([alias])) == "INVALID_KEYS"
    msg = b"an alias encoding verifies nothing"
    assert crypto([(alias.alg, alias.public, msg, KEYS[kt].sign(msg))])[0] == 0


def _created(targets: list[PublicKey], threshold: int = 1) -> Envelope:
    ev = RepoCreated("registry.example.com/x/other", 1, 0, [R1.public_key], 1, targets, threshold, FAR)
    return sign_event(ev, [R1])


@pytest.mark.parametrize(("kt", "name"), CASES)
def test_a_key_and_its_alias_cannot_make_a_threshold_of_two(crypto, kt: str, name: str) -> None:
    alias = _alias(kt, name)
    s = Sim(crypto=crypto)
    assert s.submit(_created([KEYS[kt].public_key, alias.public], threshold=2)) == "INVALID_KEYS"
    if not alias.accepted:
        return
    # With a genuine second key a threshold of 2 is allowed; the holder's two keys count once.
    assert s.create([R1], [T1]) == "OK"
    assert s.set_role("targets/ci", [KEYS[kt], alias.signer, Z], [T1], threshold=2, paths=["*"]) == "OK"
    assert s.sign_tag("v1", [KEYS[kt], alias.signer], role="targets/ci") == "THRESHOLD_NOT_MET"
    assert s.sign_tag("v1", [KEYS[kt], Z], role="targets/ci") == "OK"
    assert s.verify("v1") == "VALID"


@pytest.mark.parametrize(("kt", "name"), CASES)
def test_one_signature_under_two_alias_key_ids_counts_once(kt: str, name: str) -> None:
    # Even in a state the fold would not build (an alias among a role's keys) and with a
    # signature oracle that accepts every encoding, the key counts once.
    k, alias = KEYS[kt], _alias(kt, name).public
    keys = {k.keyid: k.public_key, alias.keyid: alias}
    ev = ImageSigned("registry.example.com/x/y", 2, 0, "targets", "v1", "sha256:" + "ab" * 32, 1, FAR)
    payload = encode_event(ev)
    sig = k.sign(payload)
    env = Envelope(payload, [Signature(k.keyid, sig), Signature(alias.keyid, sig)])
    with pytest.raises(RejectedEventError) as e:
        count_signers(None, env, keys, 2, 0, lambda key, m, s: True, "test")
    assert e.value.reason == "THRESHOLD_NOT_MET"


@pytest.mark.parametrize(("kt", "name"), CASES)
@pytest.mark.parametrize("report_against", ["alias", "key"])
def test_a_compromise_report_against_one_form_takes_every_form_down(crypto, kt: str, name: str,
                                                                    report_against: str) -> None:
    k, alias = KEYS[kt], _alias(kt, name)
    s = Sim(crypto=crypto)
    assert s.create([R1], [T1]) == "OK"
    assert s.set_role("targets/ci", [k], [T1], paths=["*"]) == "OK"
    assert s.sign_tag("v1", [k], role="targets/ci") == "OK"
    repo = s.state.repos[s.repo]
    if alias.accepted:
        assert s.set_role("targets/other", [alias.signer], [T1], paths=["o*"]) == "OK"
        assert s.sign_tag("o1", [alias.signer], role="targets/other") == "OK"
    else:
        repo.keys[alias.public.keyid] = alias.public  # as a log from before the rule might hold
    assert s.verify("v1") == "VALID"
    subject = alias.signer if report_against == "alias" and alias.accepted else k
    if report_against == "alias" and not alias.accepted:
        subject = _Signer(alias.public, None)
    assert s.compromise(subject, 0, [R1]) == "OK"
    assert repo.compromised_at(k.keyid, s.clock) and repo.compromised_at(alias.public.keyid, s.clock)
    assert s.verify("v1") == "KEY_COMPROMISED"
    if alias.accepted:
        assert s.verify("o1") == "KEY_COMPROMISED"
        assert s.sign_tag("v2", [k], role="targets/ci") == "KEY_COMPROMISED"



def test_a_key_set_in_many_repositories_is_held_once() -> None:
    """A key set in many repositories (a CI key, an organisation's root) is held once by
    the state: one key object, one key-id str and one key-id tuple per grant shape
    (``TrustState.shared_keys`` / ``shared_ids``), however many decoded copies the events
    carried; the verdicts are those of unshared keys (readers compare by equality)."""
    from sim import NOW
    from trustlog.core.evaluate import Request
    from trustlog.verifier.batch import BatchVerifier

    root, targets, ci = key("hold-root"), key("hold-targets"), key("hold-ci")
    s = Sim()
    names = [f"registry.example.com/hold/app{i}" for i in range(3)]
    for name in names:
        s.repo = name
        assert s.create([root], [targets]) == "OK"
        assert s.set_role("targets/ci", [ci], [targets]) == "OK"
        assert s.sign_tag("v1", [ci], role="targets/ci") == "OK"
    first, *others = [s.state.repos[n] for n in names]
    for repo in others:
        for kid, k in repo.keys.items():
            assert k is first.keys[kid]                                      # one key object
            assert next(x for x in first.keys if x == kid) is kid             # one key-id str
        for g, g0 in zip(repo.grants, first.grants, strict=True):
            assert g.keyids is g0.keyids and g.signers is g0.signers          # one tuple each
        signed_by = repo.tags["v1"].signatures[0][0]
        assert next(x for x in first.keys if x == signed_by) is signed_by    # the tag's too
    reqs = [Request(n, "v1") for n in names]
    assert {v.code for v in BatchVerifier(s.state, ref_time=NOW, engine="py").verify_all(reqs)} == {"VALID"}
