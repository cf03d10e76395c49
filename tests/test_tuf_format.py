"""TUF / Notary metadata formats: canonical JSON against securesystemslib (python-tuf's
own encoder) over arbitrary objects, strict parsing, times, and the keys of each
dialect — one row per case."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_or_skip
from trustlog.core.tuf_format import (
    TufFormatError, canonical_json, load_json, notary_key_id, parse_signed, parse_time,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def sslib_canonical():
    try:
        from securesystemslib.formats import encode_canonical
    except ImportError as e:
        require_or_skip("securesystemslib (with python-tuf, the test extra)", e)
    return encode_canonical


@settings(max_examples=300, deadline=None)
@given(obj=json_values)
def test_canonical_json_is_securesystemslibs(obj, sslib_canonical) -> None:
    assert canonical_json(obj) == sslib_canonical(obj).encode("utf-8")


printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")))
printable_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | printable,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(printable, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(obj=st.dictionaries(printable, printable_values, max_size=5))
def test_canonical_json_round_trips(obj) -> None:
    # (OLPC canonical JSON leaves control characters raw, which strict JSON parsers
    # refuse: it is a form to sign, not to exchange; files are ordinary JSON)
    assert load_json(canonical_json(obj)) == obj


@pytest.mark.parametrize("raw,why", [
    (b'{"a": 1.5}', "integer"),
    (b'{"a": 1, "a": 2}', "duplicate"),
    (b'{"a": NaN}', "integer"),
    (b'\xff', "not JSON"),
])
def test_load_json_is_strict(raw: bytes, why: str) -> None:
    with pytest.raises(TufFormatError, match=why):
        load_json(raw)


@pytest.mark.parametrize("text,secs", [
    ("2030-01-01T00:00:00Z", 1893456000),
    ("2030-01-01T00:00:00.999999999Z", 1893456000),     # Go's nanoseconds: floor
    ("2030-01-01T01:00:00+01:00", 1893456000),
    ("2029-12-31T19:00:00-05:00", 1893456000),
])
def test_times(text: str, secs: int) -> None:
    assert parse_time(text, "t") == secs


@pytest.mark.parametrize("bad", ["2030-01-01", "2030-13-01T00:00:00Z", 5, None, "2030-01-01T00:00:00"])
def test_bad_times(bad) -> None:
    with pytest.raises(TufFormatError):
        parse_time(bad, "t")


def _doc(signed: dict, sigs: list) -> bytes:
    return json.dumps({"signed": signed, "signatures": sigs}).encode()


def test_dialect_is_read_from_the_file() -> None:
    base = {"version": 1, "expires": "2030-01-01T00:00:00Z"}
    n = parse_signed(_doc({**base, "_type": "Targets"}, [{"keyid": "k", "method": "ecdsa",
                                                         "sig": base64.b64encode(b"x").decode()}]))
    t = parse_signed(_doc({**base, "_type": "targets"}, [{"keyid": "k", "sig": "78"}]))
    assert (n.dialect, n.signatures[0].sig, t.dialect, t.signatures[0].sig) == ("notary", b"x", "tuf", b"x")
    with pytest.raises(TufFormatError, match="_type"):
        parse_signed(_doc({**base, "_type": "Mirror"}, []))
    with pytest.raises(TufFormatError, match="version"):
        parse_signed(_doc({**base, "_type": "root", "version": 0}, []))


def test_notary_key_id_rule() -> None:
    # the id is over {"keytype", "keyval": {"private": null, "public"}}, in canonical JSON
    pub = base64.b64encode(b"\x01" * 32).decode()
    expect = __import__("hashlib").sha256(
        ('{"keytype":"ed25519","keyval":{"private":null,"public":"%s"}}' % pub).encode()).hexdigest()
    assert notary_key_id("ed25519", pub) == expect
