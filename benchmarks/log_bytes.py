"""Where a log's bytes go, field by field, and how near the record format is to its floor.

    python benchmarks/log_bytes.py [--n 200000] [--log DIR] [--json]

Reads every record of a log (by default the replay benchmark's generated log of ``--n``
events, made once with ``benchmarks/replay.py --generate-only`` when missing) and splits
each framed record into its fields: the frame (length and CRC), the log time, the Kafka
source, each signature (key id, signature bytes) and, for an ``ImageSigned`` stored as
fields (record format v2), its repository and tag names, digest and integers; whatever is
left is MessagePack headers. Records of format v1, and v2 records that carry their payload
verbatim (every other event kind), are counted whole.

Side by side in the same run:

* ``v1_bytes_per_event``: the same records in format v1 (re-derived from each record: the
  baseline the v2 format replaced);
* ``floor_self_contained_bytes_per_event``: what any format in which every record decodes
  alone must still hold: each signature's 64 bytes and its 32-byte key id, the 32-byte digest,
  the names' bytes with a one-byte length each, every integer in its shortest varint (a full
  nanosecond log time is 8-9 of them), a byte of flags, and a frame of a 4-byte CRC and a
  varint length;
* ``floor_with_references_bytes_per_event``: the same, but with key ids and repository
  names as indexes into tables kept elsewhere (as many bytes as the number of distinct ones
  in this log needs) and the log time as a delta from the previous record's: a format whose
  records no longer decode alone.

With ``--json`` the last line is one JSON object with these figures. Tests do not time
this; it measures bytes, which do not depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec

from trustlog.ingest import record_v2
from trustlog.ingest.records import decode_record, encode_record_v1, record_format

FIELDS = ("frame", "log_time", "source", "key_ids", "signatures", "repo", "tag", "digest", "integers", "headers")


def _varint_len(v: int) -> int:
    """Bytes of ``v`` (non-negative) as an LEB128 varint: the shortest self-delimiting form."""
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def _index_len(count: int) -> int:
    """Bytes of an index into a table of ``count`` entries."""
    n = 1
    while count > 256 ** n:
        n += 1
    return n


class Tally:
    """Bytes per field over the records read, and the two floors."""

    def __init__(self) -> None:
        self.records = 0
        self.stored = 0
        self.v1 = 0
        self.by_format: Counter[int] = Counter()
        self.fields: Counter[str] = Counter()
        self.whole = 0          # records counted whole (v1, or a v2 payload verbatim)
        self.whole_bytes = 0
        self.floor_alone = 0
        self.floor_refs_fixed = 0   # the reference floor, without the index bytes (known at the end)
        self.key_refs = 0
        self.repo_refs = 0
        self.keys: set[bytes | str] = set()
        self.repos: set[str] = set()
        self.prev_time = 0

    def add(self, body: bytes) -> None:
        framed = 8 + len(body)
        self.records += 1
        self.stored += framed
        fmt = record_format(body)
        self.by_format[fmt] += 1
        rec = decode_record(body)
        self.v1 += 8 + len(encode_record_v1(rec))
        enc = msgspec.msgpack.encode
        parsed = record_v2._parse(body) if fmt == 2 else None
        if parsed is None or type(parsed.event) is not record_v2._Image:
            self.whole += 1
            self.whole_bytes += framed
            # a record kept whole is its own floor here: this tool splits ImageSigned only
            self.floor_alone += framed
            self.floor_refs_fixed += framed
            return
        ev = parsed.event
        sizes = {
            "frame": 8,
            "log_time": len(enc(parsed.log_time)),
            "source": len(enc(parsed.source)),
            "key_ids": sum(len(enc(k)) for k, _ in parsed.signatures),
            "signatures": sum(len(enc(s)) for _, s in parsed.signatures),
            "repo": len(enc(ev.repo)),
            "tag": len(enc(ev.tag)),
            "digest": len(enc(ev.digest)),
            "integers": sum(len(enc(x)) for x in (ev.version, ev.issued_at, ev.size, ev.expires)) + len(enc(ev.role)),
        }
        sizes["headers"] = framed - sum(sizes.values())
        self.fields.update(sizes)
        # the floor: what the fields hold, in the shortest forms
        names = len(ev.repo.encode()) + 1 + len(ev.tag.encode()) + 1
        raw_digest = 32 if type(ev.digest) is bytes else len(ev.digest.encode()) + 1
        raw_keys = sum(32 if type(k) is bytes else len(k.encode()) + 1 for k, _ in parsed.signatures)
        sigs = sum(len(s) + (0 if len(s) == 64 else 1) for _, s in parsed.signatures)
        ints = sum(_varint_len(x) for x in (ev.version, ev.issued_at, ev.size, ev.expires))
        flags = 1 + (0 if ev.role is None else len(ev.role.encode()) + 1)
        frame = 4 + _varint_len(len(body))
        src = 0 if parsed.source is None else len(enc(parsed.source))
        self.floor_alone += frame + _varint_len(parsed.log_time) + src + raw_keys + sigs + names + raw_digest + ints + flags
        delta = max(parsed.log_time - self.prev_time, 0)
        self.prev_time = parsed.log_time
        self.floor_refs_fixed += (frame + _varint_len(delta) + src + sigs + (len(ev.tag.encode()) + 1) + raw_digest
                                  + ints + flags)
        self.key_refs += len(parsed.signatures)
        self.repo_refs += 1
        self.keys.update(k for k, _ in parsed.signatures)
        self.repos.add(ev.repo)

    def figures(self) -> dict[str, object]:
        n = max(self.records, 1)
        refs = (self.floor_refs_fixed + self.key_refs * _index_len(len(self.keys))
                + self.repo_refs * _index_len(len(self.repos)))
        split = max(self.records - self.whole, 1)
        return {
            "records": self.records,
            "format_counts": {f"v{k}": v for k, v in sorted(self.by_format.items())},
            "bytes_per_event": round(self.stored / n, 1),
            "v1_bytes_per_event": round(self.v1 / n, 1),
            "v2_over_v1": round(self.stored / max(self.v1, 1), 3),
            "floor_self_contained_bytes_per_event": round(self.floor_alone / n, 1),
            "over_floor_self_contained": round(self.stored / max(self.floor_alone, 1), 3),
            "floor_with_references_bytes_per_event": round(refs / n, 1),
            "over_floor_with_references": round(self.stored / max(refs, 1), 3),
            "distinct_key_ids": len(self.keys),
            "distinct_repos": len(self.repos),
            "records_counted_whole": self.whole,
            "whole_bytes_per_record": round(self.whole_bytes / max(self.whole, 1), 1),
            "image_signed_field_bytes": {f: round(self.fields[f] / split, 1) for f in FIELDS},
        }


def _default_log(n: int, cache: str) -> Path:
    d = Path(cache) / f"n{n}-v2"
    if not (d / "bench.json").is_file():
        here = Path(__file__).resolve().parent
        subprocess.run([sys.executable, str(here / "replay.py"), "--n", str(n), "--cache", cache, "--generate-only"],
                       check=True)
    return d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="events of the generated log to read (default 200,000)")
    p.add_argument("--log", type=Path, default=None,
                   help="read this log directory instead of the replay benchmark's generated one")
    p.add_argument("--cache", default=os.environ.get("TRUSTLOG_BENCH_CACHE", "/tmp/trustlog-bench"),
                   help="where replay.py keeps its generated logs")
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from trustlog.ingest.segment_log import SegmentLog

    d = args.log if args.log is not None else _default_log(args.n, args.cache)
    logdir = d / "log" if (d / "log").is_dir() else d
    try:
        log = SegmentLog.open(logdir, create=False, read_only=True)
    except (OSError, ValueError) as e:
        p.error(f"cannot open the log in {logdir}: {e}")
    tally = Tally()
    with log, Progress(transient=True) as progress:
        task = progress.add_task("reading records", total=log.next_offset)
        for _, body in log.scan(0):
            tally.add(body)
            if tally.records % 10_000 == 0:
                progress.update(task, completed=tally.records)
    out = tally.figures()
    out["log"] = str(d)

    console = Console()
    t = Table(title=f"{out['records']:,} records in {d}")
    t.add_column("")
    t.add_column("bytes per event", justify="right")
    t.add_column("stored / this", justify="right")
    t.add_row("stored (as written)", f"{out['bytes_per_event']}", "1.000")
    t.add_row("the same records in format v1 (baseline)", f"{out['v1_bytes_per_event']}", f"{out['v2_over_v1']}")
    t.add_row("floor, every record decodes alone", f"{out['floor_self_contained_bytes_per_event']}",
              f"{out['over_floor_self_contained']}")
    t.add_row("floor with key id / repository references and time deltas",
              f"{out['floor_with_references_bytes_per_event']}", f"{out['over_floor_with_references']}")
    console.print(t)
    f = Table(title="an ImageSigned stored as fields (v2), mean bytes per field")
    f.add_column("field")
    f.add_column("bytes", justify="right")
    for name, v in out["image_signed_field_bytes"].items():  # type: ignore[union-attr]
        f.add_row(name.replace("_", " "), str(v))
    console.print(f)
    console.print(f"formats {out['format_counts']}; {out['records_counted_whole']:,} records counted whole "
                  f"({out['whole_bytes_per_record']} B each); {out['distinct_key_ids']:,} key ids, "
                  f"{out['distinct_repos']:,} repositories")
    if args.json:
        print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
