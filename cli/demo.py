"""`trustlog demo`: the main job on the embedded default, no broker needed.

Generates a synthetic registry, ingests it into a local log (phase 1, a compromise
point, phase 2 with the compromise report), bulk-verifies every tag, and summarises.
"""
from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from trustlog.core.evaluate import Request
from trustlog.ingest.pipeline import BatchResult, TrustLog
from trustlog.ingest.synthetic import SyntheticRegistry
from trustlog.verifier.batch import BatchVerifier

from .ui import UI


@dataclass
class DemoSummary:
    directory: str
    backend: str
    repositories: int
    tags: int
    events: int
    verdicts: dict[str, int]
    rejected_events: dict[str, int]
    compromised_key: str
    compromised_repositories: int
    compromise_affected_tags: int
    compromise_kept_tags: int
    incidents: dict[str, str]
    compromise_since: int = 0          # the compromise point (log time, ns): `trustlog audit --since`
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def run_demo(directory: str | None, scale: float, ui: UI, *, ref_time: int | None = None,
             base_repos: int = 1000, base_tags: int = 20_000, seed: str = "trustlog-demo") -> DemoSummary:
    from trustlog.verifier.batch import backend_name

    BACKEND = backend_name()

    d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="trustlog-demo-"))
    d.mkdir(parents=True, exist_ok=True)
    if (d / "log").exists() and any((d / "log").iterdir()):
        from trustlog.core.errors import InputError
        raise InputError(f"{d} already holds a log; give an empty --dir (or none for a fresh temporary one)")
    ref = int(time.time()) if ref_time is None else ref_time
    n_repos = max(8, int(base_repos * scale))
    n_tags = max(2 * n_repos, int(base_tags * scale))
    reg = SyntheticRegistry(n_repos, n_tags, ref_time=ref, seed=seed)
    secs: dict[str, float] = {}
    total = BatchResult()
    ui.info(f"demo directory: {d}  (crypto backend: {BACKEND})")

    with TrustLog(d) as log:
        expected = reg.expected_tags + 3 * n_repos
        t0 = time.perf_counter()
        with ui.progress("ingest (sign, batch-verify, fold, append + fsync)", total=expected) as bar:
            total.add(log.ingest(((e.to_bytes(), None) for e in reg.phase1()),
                                 progress=lambda r: bar.advance(r.accepted + r.rejected + r.duplicates)))
            since = log.clock.last + 1
            total.add(log.ingest(((e.to_bytes(), None) for e in reg.phase2(since)),
                                 progress=lambda r: bar.advance(r.accepted + r.rejected + r.duplicates)))
            bar.done()
        secs["ingest"] = time.perf_counter() - t0

        verifier = BatchVerifier(log.state, ref_time=ref)
        requests = _requests(log, reg)
        verdict_counts: Counter[str] = Counter()
        affected = kept = 0
        comp = reg.incidents.compromised_keyid
        t0 = time.perf_counter()
        with open(d / "verdicts.jsonl", "wb") as out, \
                ui.progress("verify every tag", total=len(requests)) as bar:
            enc = msgspec.json.Encoder()
            buf = bytearray()
            for i, v in enumerate(verifier.verify(requests)):
                verdict_counts[v.code] += 1
                if v.code == "KEY_COMPROMISED":
                    affected += 1
                elif v.code == "VALID" and v.role == "targets/ci" and comp in v.keys:
                    kept += 1
                enc.encode_into(v, buf, len(buf))
                buf += b"\n"
                if (i + 1) % 20_000 == 0:
                    out.write(buf)
                    buf.clear()
                    bar.advance(20_000)
            out.write(buf)
            bar.advance(len(requests) % 20_000)
        secs["verify"] = time.perf_counter() - t0
        n_tags_state = sum(len(r.tags) for r in log.state.repos.values())
        summary = DemoSummary(
            directory=str(d), backend=BACKEND, repositories=len(log.state.repos), tags=n_tags_state,
            events=log.log.next_offset + total.rejected, verdicts=dict(verdict_counts.most_common()),
            rejected_events=dict(total.reasons.most_common()), compromised_key=comp,
            compromised_repositories=len(reg.incidents.compromised_repos), compromise_affected_tags=affected,
            compromise_kept_tags=kept, compromise_since=since,
            incidents={k: v for k, v in vars(reg.incidents).items() if isinstance(v, str) and v},
            seconds={k: round(v, 2) for k, v in secs.items()},
        )
    return summary


def _requests(log: TrustLog, reg: SyntheticRegistry) -> list[Request]:
    reqs = [Request(r.name, tag, e.digest) for r in log.state.repos.values() for tag, e in r.tags.items()]
    # requests an operator's sweep meets besides signed tags
    some = next(iter(log.state.repos.values()))
    reqs.append(Request(some.name, "never-signed"))
    reqs.append(Request("registry.example.com/nobody/unknown", "v1"))
    first_tag = next(iter(some.tags))
    reqs.append(Request(some.name, first_tag, "sha256:" + "00" * 32))
    return reqs

