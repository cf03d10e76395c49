"""Events and signed envelopes.

An event is a msgspec Struct in a tagged union (tag field ``kind``). Its canonical
encoding is the payload that is signed; an :class:`Envelope` carries the payload and its
signatures. The event id is the SHA-256 of the canonical envelope encoding.

Every event names its repository (a GUN), its ``version`` and the signer's claimed
``issued_at`` (seconds; informative only: trust is decided by log time).

Versions are scoped, as TUF versions each role's metadata separately
(:func:`version_scope`): ``ImageSigned`` / ``TagDeleted`` count per tag, ``RoleKeysSet`` /
``RoleRemoved`` / ``MetadataImported`` per role, ``RepoCreated`` / ``RootRotated`` per
root, ``KeyCompromised`` per reported key id. An event's version must be strictly
greater than the last accepted version in its scope (gaps are fine, so a publisher
without a copy of the log may use the time in ms), so a replayed event is refused
(``VERSION_ROLLBACK``) while signers of different tags or roles never collide. A
``TagDeleted`` advances its tag's scope, so no older ``ImageSigned`` brings the tag back.
A repository starts at version 1 (``RepoCreated``).
Times are integer seconds since the Unix epoch; log times are integer nanoseconds.
"""
from __future__ import annotations

import hashlib
import sys
from typing import Final, Union

import msgspec

from .encoding import canonical_bytes, canonical_decoder, decode_canonical
from .errors import EncodingError, EventTooLargeError
from .keys import PublicKey, SigningKey

DEFAULT_MAX_EVENT_BYTES = 64 * 1024
ROOT = "root"
TARGETS = "targets"


class _Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    repo: str
    version: int
    issued_at: int


class RepoCreated(_Event, frozen=True, tag="RepoCreated"):
    """Creates a repository at version 1. Signed by a threshold of its root keys."""
    root_keys: list[PublicKey]
    root_threshold: int
    targets_keys: list[PublicKey]
    targets_threshold: int
    expires: int


class RootRotated(_Event, frozen=True, tag="RootRotated"):
    """New root keys. Signed by a threshold of the old AND of the new root keys."""
    root_keys: list[PublicKey]
    root_threshold: int
    expires: int


class RoleKeysSet(_Event, frozen=True, tag="RoleKeysSet"):
    """Sets or rotates ``targets`` (signed by root) or ``targets/NAME`` (signed by
    targets). ``paths`` are shell-style tag patterns a delegated signer may sign."""
    role: str
    keys: list[PublicKey]
    threshold: int
    expires: int
    paths: list[str] = []


class RoleRemoved(_Event, frozen=True, tag="RoleRemoved"):
    """Removes a delegated signer (signed by targets)."""
    role: str


class KeyCompromised(_Event, frozen=True, tag="KeyCompromised"):
    """Reports ``keyid`` compromised since log time ``since`` (ns). Signed by a
    threshold of a role at or above every role that holds the key (root keys: root
    only; see ``compromise_authority`` in core.state)."""
    keyid: str
    since: int
    note: str = ""


class ImageSigned(_Event, frozen=True, tag="ImageSigned"):
    """Binds ``tag`` to a manifest digest, signed by ``role``'s threshold."""
    role: str
    tag: str
    digest: str
    size: int
    expires: int


class TagDeleted(_Event, frozen=True, tag="TagDeleted"):
    """Removes a tag (signed by targets, or by the delegated role that may sign it)."""
    role: str
    tag: str


class MetadataImported(_Event, frozen=True, tag="MetadataImported"):
    """A TUF / Notary v1 metadata file of ``role`` (``root``, ``targets`` or a delegated
    role) exactly as its publisher served it: the fold re-verifies it with the
    publisher's own keys and signatures (see ``core.tuf_fold``). The envelope carries no
    signatures of its own; ``version`` orders it in the repository's history and
    ``issued_at`` is when it was imported."""
    role: str
    metadata: bytes


# A runtime alias (EVENT_KINDS reads its __args__; msgspec decodes it): kept a typing.Union.
Event = Union[RepoCreated, RootRotated, RoleKeysSet, RoleRemoved, KeyCompromised, ImageSigned, TagDeleted,  # noqa: UP007
              MetadataImported]
EVENT_KINDS = tuple(c.__struct_config__.tag for c in Event.__args__)  # type: ignore[attr-defined]
_decode_event = canonical_decoder(Event)


def version_scope(event: Event) -> str:
    """The scope whose version ``event`` must exceed and advance (see the module docstring):
    ``role:ROLE``, ``key:KEYID``, or a tag's own name (tags cannot contain ``:``; the bare
    name shares the string the state already holds, which matters at millions of tags)."""
    t = type(event)
    if t is ImageSigned or t is TagDeleted:
        return event.tag  # type: ignore[union-attr]  # bare: no tag has a ':', and a tag's name is shared
    if t is RoleKeysSet or t is RoleRemoved or t is MetadataImported:
        return role_scope(event.role)  # type: ignore[union-attr]
    if t is KeyCompromised:
        return "key:" + event.keyid  # type: ignore[union-attr]
    return ROOT_SCOPE  # RepoCreated, RootRotated


def role_scope(role: str) -> str:
    """``role:ROLE``, one string for every repository that names the role: each
    repository's versions hold the scopes of its roles (``role:root``,
    ``role:targets`` at least), and a new string each would cost ~60 bytes a scope."""
    return sys.intern("role:" + role)


ROOT_SCOPE: Final = role_scope(ROOT)


class Signature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keyid: str
    sig: bytes


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    payload: bytes
    signatures: list[Signature]

    @property
    def event_id(self) -> str:
        return hashlib.sha256(canonical_bytes(self)).hexdigest()

    def to_bytes(self) -> bytes:
        return canonical_bytes(self)


def encode_event(event: Event) -> bytes:
    return canonical_bytes(event)


def decode_event(payload: bytes) -> Event:
    return _decode_event(payload)  # type: ignore[no-any-return]


def decode_envelope(data: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Envelope:
    """Decode a canonical envelope, refusing anything over ``max_bytes``."""
    if len(data) > max_bytes:
        raise EventTooLargeError(f"envelope is {len(data)} bytes; the limit is {max_bytes} (--max-event-bytes)")
    return decode_canonical(data, Envelope)


def sign_event(event: Event, signers: list[SigningKey]) -> Envelope:
    """Encode ``event`` canonically and sign it with each of ``signers`` (SigningKey)."""
    payload = encode_event(event)
    return Envelope(payload, [Signature(s.keyid, s.sign(payload)) for s in signers])


_json_env_decoder = msgspec.json.Decoder(Envelope)
_json_encoder = msgspec.json.Encoder()


def envelope_to_json(env: Envelope) -> bytes:
    """JSON form for files: bytes fields are base64 (msgspec's standard)."""
    return _json_encoder.encode(env)


def envelope_from_json(line: bytes | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Envelope:
    if len(line) > max_bytes * 2:
        raise EventTooLargeError(f"JSON envelope line is {len(line)} bytes; the limit is {max_bytes * 2}")
    try:
        env = _json_env_decoder.decode(line)
    except msgspec.ValidationError as e:
        raise EncodingError(f"envelope does not match the schema: {e}") from e
    except msgspec.DecodeError as e:
        raise EncodingError(f"malformed JSON: {e}") from e
    if len(env.payload) > max_bytes:
        raise EventTooLargeError(f"event payload is {len(env.payload)} bytes; the limit is {max_bytes}")
    return env


def is_json_wire(data: bytes) -> bool:
    """Whether an envelope on the wire is JSON (it starts with ``{``); otherwise it is
    canonical MessagePack, its own canonical byte form."""
    return data[:1] == b"{"


def decode_wire(data: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Envelope:
    """An envelope as it arrives from a file or a topic: JSON (starts with ``{``) or
    canonical MessagePack. Raises :class:`EncodingError` / :class:`EventTooLargeError`."""
    if is_json_wire(data):
        return envelope_from_json(data, max_bytes)
    return decode_envelope(data, max_bytes)
