"""Every limit at its edge: at the limit accepted, one over refused with its reason.

One row per limit (python-tuf tests each of its limits this way): the keys and patterns
of a role (``core/state.py``), the bounds of one event (``core/bounds.py``: signatures
per envelope, every integer in int64), the name lengths (``core/names.py``), and the
sizes ingest takes from files and from the Kafka wire (``--max-event-bytes``; TUF
metadata files). Each fold row runs on both crypto backends, is replayed through the
trusted fold (``TrustedFold``, same outcomes, same state), and where the row makes a tag
at the limit, that tag verifies VALID on the backend.

The key-format bounds (RSA sizes and exponents, P-256 points) have their edge tests in
``test_key_bounds.py``, beside the two key parsers they hold together.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from sim import DIGEST, FAR, NOW, Sim, key
from state_compare import assert_same_state, check_trusted_fold
from trustlog.core import names
from trustlog.core.bounds import INT64_MAX, INT64_MIN, MAX_SIGNATURES_PER_ENVELOPE, check_ref_time
from trustlog.core.errors import EncodingError
from trustlog.core.events import (
    DEFAULT_MAX_EVENT_BYTES, Envelope, Event, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RootRotated,
    Signature,
    envelope_to_json, sign_event,
)
from trustlog.core.state import MAX_KEYS_PER_ROLE, MAX_PATTERNS_PER_ROLE
from trustlog.core.tuf_format import MAX_METADATA_BYTES, TufFormatError, load_json
from trustlog.ingest import precheck
from trustlog.ingest.pipeline import TrustLog, read_lines

REPO = "registry.example.com/limits/app"
R, T, C = key("limits-root"), key("limits-targets"), key("limits-ci")


def many(n: int, prefix: str = "limits") -> list:
    """``n`` distinct deterministic keys."""
    return [key(f"{prefix}-{i}") for i in range(n)]


def started(s: Sim) -> Sim:
    """The repository every row but the creation rows starts from: root R, targets T, a
    signer targets/ci (key C) for every tag."""
    assert s.create([R], [T]) == "OK"
    assert s.set_role("targets/ci", [C], [T], paths=["*"]) == "OK"
    return s


def with_junk(env: Envelope, total: int) -> Envelope:
    """``env`` carrying ``total`` signatures: its own, then signatures by key ids no role holds."""
    junk = [Signature(f"{i:064x}", b"\0" * 64) for i in range(total - len(env.signatures))]
    return Envelope(env.payload, env.signatures + junk)


def _rotate_big_root(s: Sim, n: int) -> str:
    # the largest legitimate envelope: a root of 64 keys (threshold 64) rotated to one of
    # n - 64 keys (threshold n - 64), signed by both thresholds
    old, new = many(MAX_KEYS_PER_ROLE, "old-root"), many(n - MAX_KEYS_PER_ROLE, "new-root")
    assert s.create(old, [T], root_threshold=len(old)) == "OK"
    ev = RootRotated(s.repo, 2, 0, [k.public_key for k in new], len(new), FAR)
    return s.submit(sign_event(ev, old + new))


def _long_repo(s: Sim, n: int) -> str:
    s.repo = "registry.example.com/" + "a" * (n - len("registry.example.com/"))
    return s.create([R], [T])


def _long_role(s: Sim, n: int) -> str:
    role = "targets/" + "r" * n
    out = s.set_role(role, [C], [T], paths=["*"])
    return out if out != "OK" else s.sign_tag("v1", [C], role=role)


@dataclass(frozen=True)
class Limit:
    """One limit of the fold: ``run(sim, n)`` submits the event of size ``n`` (after
    :func:`started` unless ``creates``) and returns its outcome; at ``limit`` it must be
    "OK", at ``limit + 1`` ``reason``, with ``says`` (default: the limit) in its message.
    ``tag``: a tag the accepted row signed, which must verify VALID."""

    name: str
    limit: int
    run: Callable[[Sim, int], str]
    reason: str
    creates: bool = False
    tag: str | None = None
    says: str = ""


FOLD_LIMITS = [
    Limit("keys of a delegated signer (MAX_KEYS_PER_ROLE)", MAX_KEYS_PER_ROLE,
          lambda s, n: s.set_role("targets/many", many(n), [T], paths=["*"]), "INVALID_KEYS"),
    Limit("keys of targets (MAX_KEYS_PER_ROLE)", MAX_KEYS_PER_ROLE,
          lambda s, n: s.set_role("targets", many(n), [R]), "INVALID_KEYS"),
    Limit("root keys at creation (MAX_KEYS_PER_ROLE)", MAX_KEYS_PER_ROLE,
          lambda s, n: s.create(many(n), [T], signers=many(1)), "INVALID_KEYS", creates=True),
    Limit("targets keys at creation (MAX_KEYS_PER_ROLE)", MAX_KEYS_PER_ROLE,
          lambda s, n: s.create([R], many(n)), "INVALID_KEYS", creates=True),
    Limit("new root keys at a rotation (MAX_KEYS_PER_ROLE)", MAX_KEYS_PER_ROLE,
          lambda s, n: s.rotate_root(many(n), 1, [R, many(1)[0]]), "INVALID_KEYS"),
    Limit("patterns of a delegated signer (MAX_PATTERNS_PER_ROLE)", MAX_PATTERNS_PER_ROLE,
          lambda s, n: s.set_role("targets/p", [C], [T], paths=[f"p{i}-*" for i in range(n)]), "INVALID_ROLE"),
    Limit("signatures on a tag (MAX_SIGNATURES_PER_ENVELOPE)", MAX_SIGNATURES_PER_ENVELOPE,
          lambda s, n: s.submit(with_junk(s.signed(ImageSigned(s.repo, 3, 0, "targets", "v1", DIGEST, 1, FAR), [T]), n)),
          "INVALID_FIELD", tag="v1"),
    Limit("signatures on a root rotation of 64 + 64 keys (MAX_SIGNATURES_PER_ENVELOPE)", MAX_SIGNATURES_PER_ENVELOPE,
          _rotate_big_root, "INVALID_FIELD", creates=True),
    Limit("ImageSigned.expires in int64 (core.bounds)", INT64_MAX,
          lambda s, n: s.sign_tag("v1", [T], expires=n), "INVALID_FIELD", tag="v1", says="int64"),
    Limit("ImageSigned.size in int64", INT64_MAX,
          lambda s, n: s.submit(s.signed(ImageSigned(s.repo, 3, 0, "targets", "v1", DIGEST, n, FAR), [T])),
          "INVALID_FIELD", tag="v1", says="int64"),
    Limit("ImageSigned.version in int64", INT64_MAX, lambda s, n: s.sign_tag("v1", [T], version=n),
          "INVALID_FIELD", tag="v1", says="int64"),
    Limit("KeyCompromised.since in int64", INT64_MAX, lambda s, n: s.compromise(C, n, [T]), "INVALID_FIELD", says="int64"),
    Limit("RoleKeysSet.expires in int64", INT64_MAX,
          lambda s, n: s.set_role("targets/ci", [C], [T], paths=["*"], expires=n), "INVALID_FIELD", says="int64"),
    Limit("RootRotated.expires in int64", INT64_MAX, lambda s, n: s.rotate_root([R], 1, [R], expires=n),
          "INVALID_FIELD", says="int64"),
    Limit("RepoCreated.expires in int64", INT64_MAX, lambda s, n: s.create([R], [T], expires=n), "INVALID_FIELD",
          creates=True, says="int64"),
    Limit("repository name length (MAX_REPO_LEN)", names.MAX_REPO_LEN, _long_repo, "INVALID_FIELD", creates=True),
    Limit("tag length (MAX_TAG_LEN)", names.MAX_TAG_LEN, lambda s, n: s.sign_tag("t" * n, [C], role="targets/ci"),
          "INVALID_FIELD", tag="t" * names.MAX_TAG_LEN, says="is not a valid tag"),
    Limit("delegated role NAME length (MAX_ROLE_NAME_LEN)", names.MAX_ROLE_NAME_LEN, _long_role, "INVALID_ROLE",
          tag="v1", says="targets/NAME"),
    Limit("tag pattern length (MAX_PATTERN_LEN)", names.MAX_PATTERN_LEN,
          lambda s, n: s.set_role("targets/p", [C], [T], paths=["*" * n]), "INVALID_ROLE",
          says="is not a tag pattern"),
]


@pytest.mark.parametrize("row", FOLD_LIMITS, ids=[r.name for r in FOLD_LIMITS])
@pytest.mark.parametrize("over", [False, True], ids=["at-limit", "one-over"])
def test_fold_limit(row: Limit, over: bool, crypto) -> None:
    s = Sim(repo=REPO, crypto=crypto)
    if not row.creates:
        started(s)
    got = row.run(s, row.limit + over)
    assert got == (row.reason if over else "OK"), s.last_reject
    if over:
        assert (row.says or str(row.limit)) in s.last_reject.message, s.last_reject.message
    elif row.tag is not None:
        assert s.verify(row.tag, ref_time=NOW) == "VALID"
    state, _ = check_trusted_fold(s.trace)
    assert_same_state(state, s.state, "TrustedFold")


def test_every_integer_field_is_bounded() -> None:
    """Every integer field of every event kind is in a row above, or is a version or a
    threshold whose own rule (``version == 1``; ``1 <= threshold <= keys``) is tighter."""
    covered = {r.name.split(" ")[0] for r in FOLD_LIMITS if "int64" in r.name}
    ints = {f"{cls.__name__}.{f.name}" for cls in Event.__args__ for f in msgspec.structs.fields(cls)
            if f.type is int}
    tighter = {f for f in ints if f.endswith(("threshold", ".version", ".issued_at"))}
    assert ints - tighter - covered == set(), "add a row for each"


def test_issued_at_down_to_int64_min_is_accepted_and_below_cannot_be_encoded() -> None:
    # the lower bound of int64 is the encoding's own: MessagePack carries no integer below it
    s = started(Sim(repo=REPO))
    assert s.sign_tag("v1", [T], issued_at=INT64_MIN) == "OK"
    with pytest.raises((OverflowError, EncodingError, msgspec.EncodeError)):
        s.signed(ImageSigned(REPO, 9, INT64_MIN - 1, "targets", "v2", DIGEST, 1, FAR), [T])


@pytest.mark.parametrize(("ref", "ok"), [(INT64_MAX, True), (INT64_MAX + 1, False), (INT64_MIN, True),
                                         (INT64_MIN - 1, False)])
def test_reference_time_limit(ref: int, ok: bool) -> None:
    if ok:
        assert check_ref_time(ref) == ref
    else:
        with pytest.raises(ValueError, match="int64"):
            check_ref_time(ref)


# -- names the fold takes from imported metadata, and pin patterns: the predicates ---------

NAME_LIMITS = [
    ("imported target path (MAX_TARGET_PATH_LEN)", names.is_target_path, names.MAX_TARGET_PATH_LEN,
     lambda n: "p/" + "q" * (n - 2)),
    ("imported role name (MAX_IMPORTED_ROLE_LEN)", names.is_imported_role, names.MAX_IMPORTED_ROLE_LEN,
     lambda n: "r" * n),
    ("pin pattern (MAX_REPO_LEN)", names.is_pin_pattern, names.MAX_REPO_LEN, lambda n: "registry/*" + "a" * (n - 10)),
    ("repository name (MAX_REPO_LEN)", names.is_repo, names.MAX_REPO_LEN, lambda n: "r/" + "a" * (n - 2)),
    ("tag (MAX_TAG_LEN)", names.is_tag, names.MAX_TAG_LEN, lambda n: "t" * n),
    ("delegated role (MAX_ROLE_NAME_LEN)", names.is_delegated_role, names.MAX_ROLE_NAME_LEN,
     lambda n: "targets/" + "r" * n),
    ("tag pattern (MAX_PATTERN_LEN)", names.is_pattern, names.MAX_PATTERN_LEN, lambda n: "v" + "*" * (n - 1)),
]


@pytest.mark.parametrize(("what", "ok", "limit", "make"), NAME_LIMITS, ids=[r[0] for r in NAME_LIMITS])
def test_name_limit(what: str, ok: Callable[[str], bool], limit: int, make: Callable[[int], str]) -> None:
    at, over = make(limit), make(limit + 1)
    assert len(over) == len(at) + 1
    assert ok(at) and not ok(over), (what, len(at))


@pytest.mark.parametrize("over", [False, True], ids=["at-limit", "one-over"])
def test_imported_target_path_limit_through_the_fold(over: bool, tr, tmp_path: Path, crypto) -> None:
    """A TUF repository with a target path at MAX_TARGET_PATH_LEN imports; one character
    more and the fold refuses its targets file, naming the path. (A delegated role name
    at its limit cannot be published: its file name would be over the file system's.)"""
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES, DirSource, import_repository

    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("p/" + "q" * (names.MAX_TARGET_PATH_LEN + over - 2), b"x")
    repo.publish()
    with TrustLog(tmp_path / "log", crypto=crypto, max_event_bytes=IMPORT_MAX_EVENT_BYTES) as log:
        res = import_repository(log, "registry.example.com/tuf/limits", DirSource(repo.dir))
    if over:
        assert res.reasons == {"INVALID_FIELD": 1}, res.rejects
        assert "is not a target path" in res.rejects[0][2]
    else:
        assert res.rejected == 0, res.rejects


@pytest.mark.parametrize("over", [False, True], ids=["at-limit", "one-over"])
def test_metadata_file_size_limit(over: bool) -> None:
    """MAX_METADATA_BYTES: a TUF / Notary file of exactly the limit parses."""
    head, tail = b'{"pad":"', b'"}'
    data = head + b"x" * (MAX_METADATA_BYTES + over - len(head) - len(tail)) + tail
    if over:
        with pytest.raises(TufFormatError, match=str(MAX_METADATA_BYTES)):
            load_json(data)
    else:
        assert len(load_json(data)["pad"]) == MAX_METADATA_BYTES - len(head) - len(tail)


# -- sizes at ingest: files and the Kafka wire ---------------------------------------------


def report_of_size(n: int, *, what: str) -> bytes:
    """A valid compromise report (targets reports the ci key) whose ``what`` is exactly
    ``n`` bytes: ``"msgpack"`` the canonical envelope (a Kafka message, a binary file),
    ``"payload"`` the signed payload (inside a JSON line), ``"json"`` the JSON line."""
    def build(note_len: int) -> Envelope:
        return sign_event(KeyCompromised(REPO, 3, 0, C.keyid, 0, "n" * note_len), [T])

    def size(env: Envelope) -> int:
        return len(env.to_bytes() if what == "msgpack" else env.payload if what == "payload" else
                   envelope_to_json(env))

    if what == "json":
        line = envelope_to_json(build(0))
        line = line[:-1] + b" " * (n - len(line)) + b"}"  # JSON allows the whitespace; the limit counts it
        assert len(line) == n
        return line
    note = max(0, n - size(build(0)))
    while size(build(note)) < n:
        note += 1
    while size(build(note)) > n and note:
        note -= 1
    env = build(note)
    assert size(env) == n, (what, n, size(env))
    return env.to_bytes() if what == "msgpack" else envelope_to_json(env)


INGEST_LIMITS = [
    ("a MessagePack envelope (the Kafka wire) of max_event_bytes", "msgpack", DEFAULT_MAX_EVENT_BYTES),
    ("the payload of a JSON line of max_event_bytes", "payload", DEFAULT_MAX_EVENT_BYTES),
    ("a JSON line of 2 x max_event_bytes", "json", 2 * DEFAULT_MAX_EVENT_BYTES),
]


@pytest.mark.parametrize(("what", "form", "limit"), INGEST_LIMITS, ids=[r[1] for r in INGEST_LIMITS])
@pytest.mark.parametrize("over", [False, True], ids=["at-limit", "one-over"])
def test_ingest_size_limit(what: str, form: str, limit: int, over: bool, tmp_path: Path, crypto) -> None:
    raw = report_of_size(limit + over, what=form)
    setup = started(Sim(repo=REPO))
    with TrustLog(tmp_path / "log", crypto=crypto) as log:
        assert log.ingest_batch([(e.to_bytes(), None) for e in setup.sent]).accepted == 2
        if form == "msgpack":                       # as a Kafka message is handed to the log
            res = log.ingest_batch([(raw, None)])
        else:                                       # as a line of `trustlog ingest FILE`
            path = tmp_path / "events.jsonl"
            path.write_bytes(raw + b"\n")
            res = log.ingest(read_lines(path))
        if over:
            assert res.reasons == {"TOO_LARGE": 1}, res.last_reject
            assert str(limit) in res.last_reject[1]
        else:
            assert res.accepted == 1, res.last_reject
            assert log.state.repos[REPO].compromised_keyids == {C.keyid: 0}


# -- the batch pre-check stops at the same limits: no signature work the fold would refuse --


@pytest.mark.parametrize("over", [False, True], ids=["at-limit", "one-over"])
def test_precheck_plans_no_work_past_the_signature_limit(over: bool) -> None:
    s = started(Sim(repo=REPO))
    ev = ImageSigned(REPO, 3, 0, "targets", "v1", DIGEST, 1, FAR)
    env = with_junk(s.signed(ev, [T]), MAX_SIGNATURES_PER_ENVELOPE + over)
    _, items = precheck.plan(s.state, [(env, ev)], {}, set())
    assert len(items) == (0 if over else 1)


@pytest.mark.parametrize("over", [False, True], ids=["at-limit", "one-over"])
def test_precheck_introduces_no_keys_past_the_key_limit(over: bool) -> None:
    keys = [k.public_key for k in many(MAX_KEYS_PER_ROLE + over)]
    for ev in (RepoCreated(REPO, 1, 0, keys, 1, [T.public_key], 1, FAR), RootRotated(REPO, 2, 0, keys, 1, FAR),
               RoleKeysSet(REPO, 2, 0, "targets/many", keys, 1, FAR, ["*"])):
        assert bool(precheck.introduced_keys(ev)) is not over, type(ev).__name__
