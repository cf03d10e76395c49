"""The evidence an audit report carries, so that it proves where it came from.

A report names a signed checkpoint of the log (origin, tree size, root hash, the log
key's id) and embeds, for every event it cites, the log record and its RFC 9162
inclusion proof against that checkpoint. ``trustlog proof verify report.html --log-key
log.pub`` then checks the report alone, without the log: the checkpoint's signature, every
proof, and that every record holds the event the report says it does (repository,
kind, version, role, tag, digest). The HTML's visible provenance block is checked
against the same data, so the page a person reads is the page that was proven.

The evidence travels as JSON in ``<script type="application/json"
id="trustlog-evidence">`` (data, never executed; the report stays script-free).
"""
from __future__ import annotations

import base64
import html
import re
import time
from datetime import datetime, timezone
from typing import Any

import msgspec

from trustlog.core.errors import InputError, TrustlogError

EVIDENCE_ID = "trustlog-evidence"
MAX_PROVEN = 20_000  # cited events with an embedded proof, at most (the tables show at most 2,000 each)

#: The fields of the provenance block (shown and embedded), for docs/REFERENCE.md.
PROVENANCE_FIELDS: dict[str, str] = {
    "origin": "the log's name in its checkpoints",
    "tree_size": "records in the log at the checkpoint the report is proven against",
    "root_hash": "Merkle root (RFC 9162) of those records, hex",
    "log_key_id": "key id of the log key that signed the checkpoint (give auditors log.pub)",
    "checkpoint_time": "log time of the checkpoint, UTC ISO 8601",
    "generated_at": "when the report was written, UTC ISO 8601",
    "tool": "trustlog version and verifier backend",
    "state_version": "records folded into the state the verdicts were judged on",
}


class ReportCheckError(TrustlogError):
    """An audit report does not match its own evidence or its log's checkpoint."""


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cited_fields(ev: Any) -> dict[str, Any]:
    """What a report says about an event, taken from the decoded event itself."""
    out: dict[str, Any] = {"repo": ev.repo, "kind": type(ev).__struct_config__.tag, "version": ev.version}
    for name in ("role", "tag", "digest", "keyid"):
        if hasattr(ev, name):
            out[name] = getattr(ev, name)
    return out


def build_evidence(tl: Any, offsets: list[int], tool: str, state_version: int) -> dict[str, Any]:
    """Provenance and inclusion proofs for the records at ``offsets`` of the open
    TrustLog ``tl``, against its latest signed checkpoint."""
    from trustlog.core.merkle import leaf_hash
    from trustlog.ingest.replay import decode_trusted
    from trustlog.ingest.transparency import checkpoint_to_json

    latest = tl.tree.latest()
    if latest is None:
        raise InputError(f"{tl.dir} has no signed checkpoint yet: nothing to prove a report against")
    signed, cp = latest
    merkle = tl.tree.merkle
    proven = []
    for off in sorted(set(o for o in offsets if 0 <= o < cp.tree_size))[:MAX_PROVEN]:
        body = tl.log.read(off)
        _rec, env, ev = decode_trusted(body)
        proven.append({"offset": off, "event_id": env.event_id, "cited": _cited_fields(ev),
                       "record": base64.b64encode(body).decode(), "leaf_hash": leaf_hash(body).hex(),
                       "proof": [p.hex() for p in merkle.inclusion_proof(off, cp.tree_size)]})
    provenance = {"origin": cp.origin, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(),
                  "log_key_id": tl.tree.public_key.keyid, "checkpoint_time": iso(cp.log_time),
                  "generated_at": iso(time.time_ns()), "tool": tool, "state_version": state_version}
    return {"provenance": provenance, "checkpoint": checkpoint_to_json(signed, tl.tree.public_key), "events": proven,
            "cited": len(set(offsets)), "proven": len(proven)}


def evidence_script(evidence: dict[str, Any]) -> str:
    """The evidence as an inert JSON data block for the HTML report."""
    data = msgspec.json.encode(evidence).decode().replace("</", "<\\/")
    return f'<script type="application/json" id="{EVIDENCE_ID}">{data}</script>'


def provenance_html(evidence: dict[str, Any]) -> str:
    """The visible provenance table; each value cell names its field (``data-field``)."""
    p = evidence["provenance"]
    labels = [("checkpoint: tree size", "tree_size"), ("checkpoint: root hash", "root_hash"),
              ("log key id", "log_key_id"), ("log (origin)", "origin"), ("checkpoint time (UTC)", "checkpoint_time"),
              ("report generated (UTC)", "generated_at"), ("tool", "tool"), ("state version", "state_version")]
    rows = "".join(f'<tr><th>{html.escape(label)}</th><td class="mono" data-field="{f}">{html.escape(str(p[f]))}</td></tr>'
                   for label, f in labels)
    return (f'<table class="provenance">{rows}</table><p class="note">{evidence["proven"]} cited events carry an '
            'inclusion proof against this checkpoint. Check this report without the log: '
            '<code>trustlog proof verify REPORT.html --log-key log.pub</code></p>')


def extract_evidence(page: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The embedded evidence and the visible provenance fields of a report."""
    m = re.search(rf'<script type="application/json" id="{EVIDENCE_ID}">(.*?)</script>', page, re.S)
    if m is None:
        raise InputError("not a trustlog audit report with evidence (no embedded trustlog-evidence block)")
    try:
        evidence = msgspec.json.decode(m.group(1).replace("<\\/", "</"))
    except msgspec.DecodeError as e:
        raise ReportCheckError(f"the report's evidence block is not JSON: {e}") from e
    shown = {f: html.unescape(v) for f, v in re.findall(r'data-field="(\w+)">([^<]*)<', page)}
    return evidence, shown


def verify_report(page: str, log_key: Any, checkpoint: dict[str, Any] | None = None) -> str:
    """Check an audit report against the log key (and optionally a checkpoint obtained
    independently); return what was proven or raise :class:`ReportCheckError` /
    ``SignatureError`` / ``MerkleProofError``."""
    from trustlog.core.events import decode_envelope, decode_event
    from trustlog.core.merkle import leaf_hash, verify_inclusion
    from trustlog.ingest.records import decode_record
    from trustlog.ingest.transparency import verify_checkpoint_json

    evidence, shown = extract_evidence(page)
    try:
        cp = verify_checkpoint_json(evidence["checkpoint"], log_key)
        if checkpoint is not None and checkpoint.get("checkpoint") != evidence["checkpoint"].get("checkpoint"):
            raise ReportCheckError("the report is proven against another checkpoint than the one given")
        prov = evidence["provenance"]
        facts = {"tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "origin": cp.origin,
                 "log_key_id": log_key.keyid}
        for f, want in facts.items():
            if str(prov.get(f)) != str(want) or shown.get(f) != str(want):
                raise ReportCheckError(f"the report's {f} ({shown.get(f)!r} shown, {prov.get(f)!r} embedded) is "
                                       f"not the signed checkpoint's ({want!r})")
        for e in evidence["events"]:
            record = base64.b64decode(e["record"], validate=True)
            leaf = leaf_hash(record)
            if leaf.hex() != e["leaf_hash"]:
                raise ReportCheckError(f"offset {e['offset']}: the embedded record does not hash to its leaf")
            verify_inclusion(leaf, int(e["offset"]), cp.tree_size, [bytes.fromhex(h) for h in e["proof"]],
                             cp.root_hash)
            env = decode_envelope(decode_record(record).envelope, max_bytes=1 << 30)
            actual = _cited_fields(decode_event(env.payload))
            if env.event_id != e["event_id"] or actual != e["cited"]:
                raise ReportCheckError(f"offset {e['offset']}: the report cites {e['cited']} but the log record "
                                       f"holds {actual}")
        cited = {int(e["offset"]): e["cited"] for e in evidence["events"]}
        rows = re.findall(r'<tr[^>]*\bdata-offset="(\d+)"[^>]*>(.*?)</tr>', page, re.S)
        for off_s, row in rows:
            off = int(off_s)
            if off not in cited:
                raise ReportCheckError(f"the report shows offset {off} without a proof for it")
            for f, text in re.findall(r'data-f="(\w+)">([^<]*)</td>', row):
                if f in cited[off] and html.unescape(text) != ("" if cited[off][f] is None else str(cited[off][f])):
                    raise ReportCheckError(f"offset {off}: the report shows {f} {html.unescape(text)!r}, the log "
                                           f"record holds {cited[off][f]!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportCheckError(f"the report's evidence is incomplete or damaged: {exc!r}") from exc
    n = len(evidence["events"])
    return (f"report checks out: {n} cited events ({len(rows)} table rows) are in the log of {cp.tree_size} records "
            f"(root {cp.root_hash.hex()[:16]}…) signed by log key {log_key.keyid[:16]}…")
