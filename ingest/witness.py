"""Checkpoints off the host: publishing each signed checkpoint to places the log host
cannot rewrite, and reading them back for ``trustlog log verify --witness``.

A place is named by a SPEC (the same string publishes and verifies):

``file:DIR``
    an append-only copy: ``DIR/<origin>/<tree size>.note``, each written once with
    ``O_EXCL`` and fsynced (mount it from another host, WORM storage, a backup).
``kafka:HOST:PORT[,HOST:PORT]/TOPIC``
    one record per checkpoint (key: the origin, value: the signed note) on a topic the
    log host may write but not delete from (broker ACLs: Write, no Delete/Alter).
``http(s)://HOST:PORT[/PREFIX][,vkey=FILE]``
    a witness speaking C2SP tlog-witness (``POST PREFIX/add-checkpoint`` with a
    consistency proof from the size it last cosigned), such as ``trustlog witness
    serve``; it answers with a ``cosignature/v1`` line. ``vkey=FILE`` (the witness's
    verifier key, ``WITNESS_DIR/witness.vkey``) is needed to verify: ``log verify``
    then requires the witness's cosignature on the checkpoint it serves at
    ``GET PREFIX/checkpoint?origin=…`` (a trustlog extension: the spec's monitor
    retrieval is still open).

``TRUSTLOG_PUBLISH`` holds SPECs separated by whitespace; :class:`LogTree` publishes
every checkpoint it signs to each of them. A failure is a warning, never an error in
the ingest path: the checkpoint is durable in the log, and the next one catches up.
"""
from __future__ import annotations

import base64
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from trustlog.core.checkpoint import SignedCheckpoint, checkpoint_from_note, checkpoint_note, decode_checkpoint
from trustlog.core.errors import InputError, SignatureError, TrustlogError
from trustlog.core.keys import PublicKey
from trustlog.core.note import (
    ALG_COSIGNATURE_V1, Note, NoteError, NoteSignature, cosignature_message, key_hash, parse_note,
    parse_verifier_key, split_cosignature,
)

from .kafka_servers import bootstrap_servers


class _ConsistencyProofs(Protocol):
    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]: ...


class PublishingTree(Protocol):
    """What publishing needs of the log's tree (a :class:`~.transparency.LogTree`): the
    log key, the log's name in its checkpoints, and consistency proofs for witnesses.
    A protocol rather than an import: ``transparency`` imports this module to publish."""

    public_key: PublicKey
    origin: str

    @property
    def merkle(self) -> _ConsistencyProofs: ...

PUBLISH_ENV = "TRUSTLOG_PUBLISH"
TIMEOUT_S = 10.0
SPEC_HELP = "file:DIR | kafka:HOST:PORT/TOPIC | http://HOST:PORT[,vkey=FILE]"


class WitnessError(TrustlogError):
    """A place to publish to or read from could not be used."""


@dataclass(frozen=True)
class Place:
    """A parsed SPEC."""

    spec: str
    kind: str                      # "file", "kafka", "witness"
    target: str                    # directory, bootstrap servers, URL prefix
    topic: str = ""
    vkey: tuple[str, bytes] | None = None  # witness (name, Ed25519 public key)


def parse_spec(spec: str) -> Place:
    """A :class:`Place` from a SPEC; raises :class:`InputError` with the grammar."""
    s = spec.strip()
    if s.startswith("file:") and len(s) > 5:
        return Place(s, "file", s[5:])
    if s.startswith("kafka:"):
        servers, _, topic = s[6:].rpartition("/")
        if not servers or not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
            raise InputError(f"witness {spec!r}: write kafka:HOST:PORT/TOPIC")
        return Place(s, "kafka", servers, topic)
    if s.startswith(("http://", "https://")):
        url, *opts = s.split(",")
        vkey = None
        for o in opts:
            k, _, v = o.partition("=")
            if k != "vkey" or not v:
                raise InputError(f"witness {spec!r}: unknown option {o!r} (only vkey=FILE)")
            vkey = _read_vkey(v)
        return Place(s, "witness", url.rstrip("/"), vkey=vkey)
    raise InputError(f"witness {spec!r} is not one of {SPEC_HELP}")


def _read_vkey(path: str) -> tuple[str, bytes]:
    p = Path(path)
    try:
        name, alg, public = parse_verifier_key(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"vkey={path}: cannot read the witness verifier key: {e}") from e
    except NoteError as e:
        raise InputError(f"vkey={path}: {e}") from e
    if alg != ALG_COSIGNATURE_V1 or len(public) != 32:
        raise InputError(f"vkey={path}: not an Ed25519 cosignature/v1 key (type 0x04)")
    return name, public


def places_from_env() -> list[Place]:
    return [parse_spec(s) for s in os.environ.get(PUBLISH_ENV, "").split()]


def _origin_dir(origin: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", origin)


# -- publishing ---------------------------------------------------------------------------

def publish_everywhere(signed: SignedCheckpoint, tree: PublishingTree, places: Iterable[Place] | None = None) -> list[str]:
    """Publish to every place (``TRUSTLOG_PUBLISH`` by default); returns one line per failure."""
    failures = []
    for place in places_from_env() if places is None else places:
        try:
            publish(place, signed, tree)
        except (TrustlogError, OSError) as e:
            failures.append(f"{place.spec}: {e}")
    return failures


def publish(place: Place, signed: SignedCheckpoint, tree: PublishingTree) -> list[NoteSignature]:
    """Publish one checkpoint; returns the cosignatures a witness gave (else none)."""
    note = checkpoint_note(signed, tree.public_key)
    cp = decode_checkpoint(signed.checkpoint)
    if place.kind == "file":
        _publish_file(Path(place.target) / _origin_dir(cp.origin), f"{cp.tree_size:020d}.note", note)
        return []
    if place.kind == "kafka":
        _publish_kafka(place, cp.origin.encode(), note)
        return []
    return _publish_witness(place, note, cp.tree_size, tree)


def _publish_file(directory: Path, name: str, note: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        if path.read_bytes() != note:
            raise WitnessError(f"{path} already holds another checkpoint of that size (a fork of the log?)") from None
        return
    try:
        os.write(fd, note)
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _publish_kafka(place: Place, key: bytes, note: bytes) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap_servers(place.target), acks="all", retries=3,
                                 request_timeout_ms=int(TIMEOUT_S * 1000), max_block_ms=int(TIMEOUT_S * 1000))
    except KafkaError as e:
        raise WitnessError(f"cannot reach Kafka at {place.target}: {e}") from e
    try:
        producer.send(place.topic, key=key, value=note).get(timeout=TIMEOUT_S)
        producer.flush(TIMEOUT_S)
    except KafkaError as e:
        raise WitnessError(f"topic {place.topic}: {e}") from e
    finally:
        producer.close(TIMEOUT_S)


_known_sizes: dict[tuple[str, str], int] = {}  # (witness URL, origin) -> size it last cosigned


def _publish_witness(place: Place, note: bytes, size: int, tree: PublishingTree) -> list[NoteSignature]:
    """tlog-witness add-checkpoint: send a consistency proof from the size the witness
    last cosigned (0 when unknown; a 409 answer names it, and the request is retried)."""
    origin = tree.origin
    old = _known_sizes.get((place.target, origin), 0)
    for _attempt in range(2):
        if old > size:
            raise WitnessError(f"witness {place.target} has cosigned size {old}, past this log's {size}: "
                               "the log lost records (or the witness saw another log)")
        proof = tree.merkle.consistency_proof(old, size) if 0 < old < size else []
        body = (f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n").encode() + note
        status, text = _http("POST", place.target + "/add-checkpoint", body)
        if status == 200:
            _known_sizes[(place.target, origin)] = size
            sigs = parse_note(note + text).signatures[len(parse_note(note).signatures):]
            return list(sigs)
        if status == 409 and text.strip().isdigit() and int(text) != old:
            old = int(text)
            continue
        raise WitnessError(f"witness {place.target} refused the checkpoint of size {size}: "
                           f"HTTP {status} {text.decode(errors='replace').strip()[:200]}")
    raise WitnessError(f"witness {place.target} keeps changing its size")


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:  # noqa: S310 - operator-given URL
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise WitnessError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from e


# -- reading back -------------------------------------------------------------------------

@dataclass(frozen=True)
class Witnessed:
    """A checkpoint a place holds, its log signature not yet checked; ``cosigned`` is
    the witness cosignature's timestamp once that was verified."""

    label: str
    signed: SignedCheckpoint
    cosigned: int | None = None


def collect(place: Place, log_key: PublicKey, origin: str) -> list[Witnessed]:
    """Every checkpoint of the log ``origin`` that ``place`` holds. Raises
    :class:`WitnessError` when the place cannot be read or a witness's cosignature is
    missing or wrong, :class:`InputError` for a note that is not this log's."""
    if place.kind == "file":
        d = Path(place.target) / _origin_dir(origin)
        try:
            if not d.is_dir():
                return []
            return [_from_note(f"{place.spec} {p.name}", p.read_bytes(), log_key)
                    for p in sorted(d.glob("*.note"))]
        except OSError as e:
            raise WitnessError(f"cannot read {d}: {e.strerror or e}") from e
    if place.kind == "kafka":
        return [_from_note(f"{place.spec} offset {off}", value, log_key)
                for off, key, value in _read_topic(place) if key == origin.encode()]
    if place.vkey is None:
        raise InputError(f"witness {place.spec}: give its verifier key to check cosignatures "
                         f"({place.spec},vkey=WITNESS_DIR/witness.vkey)")
    status, text = _http("GET", place.target + "/checkpoint?" + urllib.parse.urlencode({"origin": origin}))
    if status == 404:
        return []
    if status != 200:
        raise WitnessError(f"witness {place.target}: HTTP {status} {text.decode(errors='replace').strip()[:200]}")
    w = _from_note(f"witness {place.target}", text, log_key)
    ts = verify_cosignature(parse_note(text), place.vkey)
    return [Witnessed(w.label, w.signed, ts)]


def _from_note(label: str, data: bytes, log_key: PublicKey) -> Witnessed:
    try:
        return Witnessed(label, checkpoint_from_note(data, log_key)[0])
    except TrustlogError as e:
        raise WitnessError(f"{label}: not a checkpoint note of this log: {e}") from e


def verify_cosignature(note: Note, vkey: tuple[str, bytes]) -> int:
    """The timestamp of the witness's valid ``cosignature/v1`` on ``note``; raises
    :class:`SignatureError` if there is none."""
    from trustlog.core.keys import PublicKey as PK

    name, public = vkey
    want = key_hash(name, ALG_COSIGNATURE_V1, public)
    for s in note.signatures:
        if s.name == name and s.key_hash == want:
            ts, sig = split_cosignature(s)
            PK("ed25519", public).verify(cosignature_message(note.text, ts), sig)
            return ts
    raise SignatureError(f"the checkpoint carries no cosignature by witness {name!r}")


def _read_topic(place: Place) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of the topic, from the beginning of each partition to its end."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers(place.target), enable_auto_commit=False,
                                 group_id=None, consumer_timeout_ms=int(TIMEOUT_S * 1000),
                                 request_timeout_ms=int(TIMEOUT_S * 1000) + 1000)
    except KafkaError as e:
        raise WitnessError(f"cannot reach Kafka at {place.target}: {e}") from e
    try:
        parts = consumer.partitions_for_topic(place.topic)
        if not parts:
            return []
        tps = [TopicPartition(place.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[tuple[int, bytes | None, bytes]] = []
        pending = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        while pending:
            batch = consumer.poll(timeout_ms=int(TIMEOUT_S * 1000))
            if not batch:
                raise WitnessError(f"topic {place.topic}: no records within {TIMEOUT_S:.0f} s "
                                   "before the end offsets were reached")
            for tp, records in batch.items():
                out.extend((r.offset, r.key, r.value) for r in records)
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return out
    except KafkaError as e:
        raise WitnessError(f"topic {place.topic}: {e}") from e
    finally:
        consumer.close()
