"""RFC 9162 proofs of the log for auditors: the inclusion proof of one record, the
consistency proof between two tree sizes (as the JSON that ``trustlog proof inclusion|
consistency --json`` writes), and checking such a proof against signed checkpoints
without the log (``trustlog proof verify``).

A proof is made for the tree size of the latest signed checkpoint unless a size is
given, so that ``proof verify`` can check it against that checkpoint. An inclusion
proof is checked against the log's own root before it is handed out, and carries the
record itself (base64), so a verifier can see what was included, not just a hash.
"""
from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from trustlog.core.errors import InputError
from trustlog.core.events import decode_envelope
from trustlog.core.merkle import EMPTY_ROOT, MerkleProofError, leaf_hash, verify_consistency, verify_inclusion

if TYPE_CHECKING:
    from trustlog.core.keys import PublicKey
    from trustlog.ingest.pipeline import TrustLog


def _checkpointed_size(tl: TrustLog) -> int:
    """The tree size of the latest signed checkpoint, else the whole tree's."""
    latest = tl.tree.latest()
    return latest[1].tree_size if latest else tl.tree.merkle.size


def inclusion_proof(tl: TrustLog, offset: int, size: int | None = None) -> dict[str, Any]:
    """The proof that record ``offset`` is in the tree of ``size`` leaves (default: the
    latest checkpoint's), checked against that tree's root before it is returned."""
    from trustlog.ingest.records import decode_record
    from trustlog.ingest.view import read_record

    merkle = tl.tree.merkle
    size = _checkpointed_size(tl) if size is None else size
    if not 0 <= offset < size <= merkle.size:
        raise InputError(f"offset {offset} is not in a tree of {size} leaves (the log holds {merkle.size})")
    body = read_record(tl.dir, offset)
    path = merkle.inclusion_proof(offset, size)
    root = merkle.root_at(size)
    leaf = leaf_hash(body)
    verify_inclusion(leaf, offset, size, path, root)
    env = decode_envelope(decode_record(body).envelope, max_bytes=1 << 30)
    return {"type": "inclusion", "origin": tl.tree.origin, "leaf_index": offset, "tree_size": size,
            "leaf_hash": leaf.hex(), "root_hash": root.hex(), "event_id": env.event_id,
            "record": base64.b64encode(body).decode(), "proof": [p.hex() for p in path]}


def consistency_proof(tl: TrustLog, old: int, new: int | None = None) -> dict[str, Any]:
    """The proof that the tree of ``new`` leaves (default: the latest checkpoint's)
    extends the tree of ``old`` leaves."""
    merkle = tl.tree.merkle
    new = _checkpointed_size(tl) if new is None else new
    if not 0 <= old <= new <= merkle.size:
        raise InputError(f"need 0 <= OLD ({old}) <= NEW ({new}) <= {merkle.size}")
    path = merkle.consistency_proof(old, new)
    return {"type": "consistency", "origin": tl.tree.origin, "old_size": old, "new_size": new,
            "old_root": merkle.root_at(old).hex(), "new_root": merkle.root_at(new).hex(),
            "proof": [p.hex() for p in path]}


def verify_proof_file(proof: dict[str, Any], checkpoints: list[dict[str, Any]], log_key: PublicKey) -> str:
    """Check a proof against signed checkpoints, without the log; returns what was
    proven or raises :class:`TrustlogError` (``MerkleProofError``, ``SignatureError``;
    ``InputError`` for a file that is not a proof or a checkpoint that is missing)."""
    from trustlog.ingest.transparency import verify_checkpoint_json

    cps = {}
    for c in checkpoints:
        cp = verify_checkpoint_json(c, log_key)
        cps[cp.tree_size] = cp
    try:
        kind = proof["type"]
        path = [bytes.fromhex(h) for h in proof["proof"]]
        if kind == "inclusion":
            index, size = int(proof["leaf_index"]), int(proof["tree_size"])
            leaf = bytes.fromhex(proof["leaf_hash"])
            if "record" in proof:
                record = base64.b64decode(proof["record"], validate=True)
                if leaf_hash(record) != leaf:
                    raise MerkleProofError("the record in the proof file does not hash to its leaf_hash")
            if size not in cps:
                raise InputError(f"the proof is for tree size {size}; give the signed checkpoint of that size "
                                 f"(have: {sorted(cps) or 'none'})")
            verify_inclusion(leaf, index, size, path, cps[size].root_hash)
            return f"record {index} is included in the log of {size} records signed by key {log_key.keyid[:16]}…"
        if kind == "consistency":
            old, new = int(proof["old_size"]), int(proof["new_size"])
            missing = [s for s in (old, new) if s not in cps and s != 0]
            if missing:
                raise InputError(f"give the signed checkpoints of sizes {missing} (have: {sorted(cps) or 'none'})")
            old_root = cps[old].root_hash if old else EMPTY_ROOT
            verify_consistency(old, new, old_root, cps[new].root_hash, path)
            return f"the log of {new} records extends the log of {old} records (key {log_key.keyid[:16]}…)"
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"not a proof file written by `trustlog proof ... --json`: {e}") from e
    raise InputError(f"unknown proof type {proof.get('type')!r}")
