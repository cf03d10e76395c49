"""Import TUF / Notary v1 repositories into a trust log, and follow a Notary server.

A *source* serves one repository's metadata files by name (``1.root.json``,
``timestamp.json``, ``targets/releases.json`` ...): a directory (:class:`DirSource`)
or a Notary server (:class:`NotarySource`, ``GET /v2/<GUN>/_trust/tuf/<file>``).
:func:`import_repository` brings the log up to what the source publishes:

1. the root chain, ``N+1.root.json`` after the folded root N (or ``root.json`` when the
   server names no next version: a lower version there is a rollback, recorded);
2. the timestamp and the snapshot, verified against the folded root
   (``core.tuf_consistency``);
3. ``targets`` and, depth first, every delegated role the folded metadata delegates,
   each checked against the snapshot and handed to the fold only when it is not the
   file already folded.

Every file goes into the log as one ``MetadataImported`` event that keeps its bytes;
what the fold refuses, and what fails the snapshot check, is kept in the rejects log
with its reason (once: the envelope of an unchanged refusal is the same bytes). A
rejected file stops that repository's import for this round, never the others'.

:class:`NotaryFollower` reads the server's changefeed (``GET /v2/_trust/changefeed``)
and imports each repository that changed; the change id of the last change is stored
with the records a page of changes produced (``LogRecord.source``, the id the page was
read after), so a restart resumes there, reading at most that page again. Importing is
idempotent, so a change seen twice never appends twice.
"""
from __future__ import annotations

import fnmatch
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from collections.abc import Callable, Iterator, Sequence

from trustlog.core.errors import InputError, TrustlogError
from trustlog.core.events import ROOT, TARGETS, Envelope, MetadataImported, encode_event
from trustlog.core.reasons import Reject
from trustlog.core.tuf_consistency import InconsistentMetadataError, Publication, check_publication
from trustlog.core.tuf_format import MAX_METADATA_BYTES, TufFormatError, parse_root, parse_signed

from .pipeline import TrustLog
from .records import KafkaPosition

IMPORT_MAX_EVENT_BYTES = MAX_METADATA_BYTES + 4096


class MetadataSourceError(TrustlogError):
    """A source that cannot be read (the server is down, the directory is not a TUF repository)."""


class MetadataSource(Protocol):
    def fetch(self, filename: str) -> bytes | None:
        """The file's bytes, or None when the source has no such file."""


class DirSource:
    """A TUF repository's metadata directory (python-tuf's layout; Notary's role names
    ``targets/NAME`` are files ``targets/NAME.json``)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise InputError(f"{self.dir}: no such directory")

    def fetch(self, filename: str) -> bytes | None:
        p = self.dir / filename
        if ".." in Path(filename).parts or not p.is_file():
            return None
        if p.stat().st_size > MAX_METADATA_BYTES:
            raise MetadataSourceError(f"{p}: over {MAX_METADATA_BYTES} bytes")
        return p.read_bytes()


class UrlSource:
    """A TUF repository's metadata served over HTTP(S): ``BASE/1.root.json`` and so on."""

    def __init__(self, base_url: str, ca_file: str | None = None) -> None:
        self.client = NotaryClient(base_url, ca_file=ca_file)

    def fetch(self, filename: str) -> bytes | None:
        return self.client.get("/" + urllib.parse.quote(filename))


class NotaryClient:
    """The few read-only calls of Notary v1's server API that an importer needs."""

    def __init__(self, server: str, timeout: float = 10.0, ca_file: str | None = None) -> None:
        u = urllib.parse.urlparse(server)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise InputError(f"{server!r}: give the Notary server as http(s)://HOST:PORT")
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._ctx = None
        if ca_file is not None:
            import ssl

            try:
                self._ctx = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise InputError(f"{ca_file}: not a readable CA bundle: {e}") from e

    def get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.server + path, timeout=self.timeout, context=self._ctx) as r:
                data = r.read(MAX_METADATA_BYTES + 1)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise MetadataSourceError(f"{self.server}{path}: HTTP {e.code}") from e
        except (urllib.error.URLError, OSError) as e:
            raise MetadataSourceError(f"{self.server}: cannot reach the Notary server: {e}") from e
        if len(data) > MAX_METADATA_BYTES:
            raise MetadataSourceError(f"{self.server}{path}: over {MAX_METADATA_BYTES} bytes")
        return data

    def changefeed(self, after: int, records: int = 100) -> list[dict]:
        """Changes with an id above ``after``, oldest first."""
        data = self.get(f"/v2/_trust/changefeed?change_id={after}&records={records}")
        if data is None:
            raise MetadataSourceError(f"{self.server}: no changefeed (is this a Notary v1 server?)")
        try:
            doc = json.loads(data)
            recs = [r for r in doc.get("records") or [] if int(r["ID"]) > after]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise MetadataSourceError(f"{self.server}: the changefeed is not what Notary serves: {e}") from e
        return sorted(recs, key=lambda r: int(r["ID"]))


class NotarySource:
    def __init__(self, client: NotaryClient, gun: str) -> None:
        self.client = client
        self.gun = gun

    def fetch(self, filename: str) -> bytes | None:
        return self.client.get(f"/v2/{urllib.parse.quote(self.gun)}/_trust/tuf/{filename}")


@dataclass
class ImportResult:
    repositories: int = 0
    appended: int = 0
    unchanged: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    rejects: list[tuple[str, str, str]] = field(default_factory=list)   # (repo, reason, detail)
    targets: int = 0                                                    # target files in appended metadata

    def add(self, o: ImportResult) -> None:
        self.repositories += o.repositories
        self.appended += o.appended
        self.unchanged += o.unchanged
        self.rejected += o.rejected
        self.reasons.update(o.reasons)
        self.rejects += o.rejects
        self.targets += o.targets


class _RepoImport:
    def __init__(self, log: TrustLog, gun: str, source: MetadataSource, position: KafkaPosition | None) -> None:
        self.log, self.gun, self.source, self.position = log, gun, source, position
        self.res = ImportResult(repositories=1)

    def _reject(self, reason: str, detail: str, raw: bytes) -> None:
        self.res.rejected += 1
        self.res.reasons[reason] += 1
        self.res.rejects.append((self.gun, reason, detail))
        self.log.record_reject(reason, f"{self.gun}: {detail}", raw)

    def envelope(self, role: str, data: bytes) -> bytes:
        """The event for one metadata file, as the next event of the repository."""
        repo = self.log.state.repos.get(self.gun)
        ev = MetadataImported(self.gun, (repo.version if repo else 0) + 1, 0, role, data)
        return Envelope(encode_event(ev), []).to_bytes()

    def outcome(self, role: str, raw: bytes, rejected: tuple[str, str] | None) -> bool:
        """Account for one submitted file after its batch; True when it is in the log."""
        if rejected is None:
            self.res.appended += 1
            if role != ROOT:
                self.res.targets += len(self.log.state.repos[self.gun].tuf.roles[role].targets)
            return True
        reason, detail = rejected
        self.res.rejected += 1
        self.res.reasons[reason] += 1
        self.res.rejects.append((self.gun, reason, detail))
        return False

    def run(self) -> Iterator[tuple[str, bytes]]:
        """The files to append, one at a time: each ``yield`` hands one to the
        coordinator (:func:`import_repositories`), which sends back whether it landed."""
        repo = self.log.state.repos.get(self.gun)
        if repo is not None and repo.tuf is None:
            raise InputError(f"{self.gun}: a native trustlog repository; import into another log or GUN")
        if not (yield from self._roots()):
            return
        tuf = self.log.state.repos[self.gun].tuf
        pub = self._publication(parse_root(tuf.root_metadata))
        if pub is None:
            return
        todo = [TARGETS]
        seen: set[str] = set()
        while todo:
            role = todo.pop()
            if role in seen:
                continue
            seen.add(role)
            info = pub.entry(role)
            if info is None:
                continue  # delegated but never published
            data = self.source.fetch(f"{role}.json")
            if data is None and info.version:
                data = self.source.fetch(f"{info.version}.{role}.json")
            if data is None:
                continue
            cur = tuf.roles.get(role)
            try:
                meta = parse_signed(data, "targets")
            except TufFormatError:
                meta = None  # the fold names what is wrong with it
            if meta is not None and cur is not None and meta.version == cur.version:
                if meta.message != cur.message or not {sig for _, sig in cur.signatures} <= {
                        s.sig for s in meta.signatures}:
                    self._reject(Reject.METADATA_CHANGED.value, f"{role} version {meta.version} was re-signed or "
                                 "changed without a new version", data)
                    continue
                self.res.unchanged += 1
            else:
                try:
                    pub.check(role, data, meta.version if meta else 0)
                except InconsistentMetadataError as e:
                    self._reject(e.reason.value, str(e), data)
                    continue
                if not (yield role, data):
                    continue
            rs = tuf.roles.get(role)
            if rs is not None:
                todo.extend(d.name for d in reversed(rs.delegations))

    def _roots(self) -> Iterator:
        repo = self.log.state.repos.get(self.gun)
        cur = repo.tuf.root_version if repo is not None else 0
        while True:
            data = self.source.fetch(f"{cur + 1}.root.json")
            if data is None:
                break
            if not (yield ROOT, data):
                return False
            cur += 1
        latest = self.source.fetch("root.json")
        if latest is None:
            if cur == 0:
                if isinstance(self.source, DirSource):
                    raise MetadataSourceError(f"{self.gun}: {self.source.dir} has no root.json")
                return False   # a repository deleted since it changed: nothing to import
            return True
        try:
            v = parse_signed(latest, "root").version
        except TufFormatError:
            v = -1
        if v != cur or cur == 0:
            # not the folded root: the fold judges it (an older version is a rollback,
            # a later one a skipped rotation, the first one is trusted on first use)
            return (yield ROOT, latest) and self.log.state.repos[self.gun].tuf.root_version == v
        folded = self.log.state.repos[self.gun].tuf.root_metadata
        if latest != folded:
            a, b = parse_signed(folded, "root"), parse_signed(latest, "root")
            if a.message != b.message or not {s.sig for s in a.signatures} <= {s.sig for s in b.signatures}:
                self._reject(Reject.METADATA_CHANGED.value, f"root version {v} was re-signed or changed "
                             "without a new version", latest)
                return False
        return True

    def _publication(self, root) -> Publication | None:
        ts = self.source.fetch("timestamp.json")
        sn = self.source.fetch("snapshot.json")
        if ts is None or sn is None:
            self._reject(Reject.SNAPSHOT_MISMATCH.value, "no timestamp.json / snapshot.json to check targets against",
                         (ts or b"") + (sn or b""))
            return None
        try:
            return check_publication(root, ts, sn, int(time.time()))
        except InconsistentMetadataError as e:
            self._reject(e.reason.value, str(e), ts + sn)
        except TufFormatError as e:
            self._reject(Reject.MALFORMED.value, f"timestamp/snapshot: {e}", ts + sn)
        return None


def import_repositories(log: TrustLog, items: Sequence[tuple[str, MetadataSource]],
                        position: KafkaPosition | None = None) -> ImportResult:
    """Bring each ``(gun, source)`` in ``log`` up to what its source publishes (see the
    module doc), in lock-step rounds: each round appends the next file of every
    repository as one batch (one group commit), so a page of the changefeed costs a few
    fsyncs, not one per file. A repository whose file is refused stops for this call."""
    runs: list[tuple[_RepoImport, Iterator]] = []
    pending: dict[int, tuple[str, bytes]] = {}
    appended = 0
    for gun, source in items:
        r = _RepoImport(log, gun, source, position)
        gen = r.run()
        runs.append((r, gen))
        try:
            pending[len(runs) - 1] = next(gen)
        except StopIteration:
            pass
        except InputError as e:   # a native repository of the same name
            if len(items) == 1:
                raise
            r.res.rejected += 1
            r.res.reasons[Reject.INVALID_ROLE.value] += 1
            r.res.rejects.append((gun, Reject.INVALID_ROLE.value, str(e)))
    while pending:
        order = list(pending)
        raws = []
        for i in order:
            r = runs[i][0]
            role, data = pending[i]
            raws.append(r.envelope(role, data))
        res = log.ingest_batch([(raw, position) for raw in raws])
        appended += res.accepted
        nxt: dict[int, tuple[str, bytes]] = {}
        for k, i in enumerate(order):
            r, gen = runs[i]
            ok = r.outcome(pending[i][0], raws[k], res.rejected_items.get(k))
            try:
                nxt[i] = gen.send(ok)
            except StopIteration:
                pass
        pending = nxt
    total = ImportResult()
    for r, _ in runs:
        total.add(r.res)
    total.appended = appended   # a redelivered file is counted by its repository, not here
    return total


def import_repository(log: TrustLog, gun: str, source: MetadataSource,
                      position: KafkaPosition | None = None) -> ImportResult:
    """Bring ``gun`` in ``log`` up to what ``source`` publishes (see the module doc)."""
    return import_repositories(log, [(gun, source)], position)


class _Prefetched:
    """A source whose usual files are fetched ahead, in parallel (the rest on demand)."""

    def __init__(self, source: MetadataSource, names: Sequence[str], pool: ThreadPoolExecutor) -> None:
        self.source = source
        self._futures: dict[str, Future] = {n: pool.submit(source.fetch, n) for n in names}
        self._done: dict[str, bytes | None] = {}

    def wait(self) -> None:
        for n, f in self._futures.items():
            self._done[n] = f.result()   # re-raises a failed fetch

    def fetch(self, filename: str) -> bytes | None:
        if filename in self._done:
            return self._done[filename]
        return self.source.fetch(filename)


def changefeed_topic(server: str) -> str:
    """The name under which a server's change ids are kept in ``TrustLog.positions``."""
    return "notary:" + server.rstrip("/")


class NotaryFollower:
    """Follows one Notary server's changefeed into ``log``."""

    def __init__(self, log: TrustLog, client: NotaryClient, gun_pattern: str = "*", page: int = 100,
                 fetchers: int = 8) -> None:
        self.log, self.client, self.pattern, self.page = log, client, gun_pattern, page
        self.topic = changefeed_topic(client.server)
        self.last_id = log.positions.get((self.topic, 0), 0)
        self.pool = ThreadPoolExecutor(max_workers=fetchers, thread_name_prefix="notary-fetch")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def poll(self) -> tuple[ImportResult, int]:
        """One page of the changefeed: import every matching repository that changed
        (once per page however often it changed). Returns the result and how many
        changes were read."""
        changes = self.client.changefeed(self.last_id, self.page)
        total = ImportResult()
        if not changes:
            return total, 0
        last = int(changes[-1]["ID"])
        guns: dict[str, int] = {}
        for c in changes:
            gun = str(c.get("GUN", ""))
            if fnmatch.fnmatchcase(gun, self.pattern) and c.get("Category", "update") == "update":
                guns[gun] = int(c["ID"])
        # The records a page produces carry the change id the page was read *after*: a
        # restart (or a fetch failing half way through the page) reads the whole page
        # again, and importing is idempotent, so nothing is lost and nothing doubled.
        pos = KafkaPosition(self.topic, 0, self.last_id)
        sources = []
        for gun in guns:
            repo = self.log.state.repos.get(gun)
            cur = repo.tuf.root_version if repo is not None and repo.tuf is not None else 0
            sources.append((gun, _Prefetched(NotarySource(self.client, gun),
                                             (f"{cur + 1}.root.json", "root.json", "timestamp.json",
                                              "snapshot.json", "targets.json"), self.pool)))
        for _, src in sources:
            src.wait()
        # a fetch that failed (not a 404) raises here, before anything is appended: the
        # page is read again on the next poll
        total.add(import_repositories(self.log, sources, pos))
        self.last_id = last
        return total, len(changes)

    def follow(self, *, interval: float = 0.2, until: Callable[[], bool] = lambda: False,
               on_result: Callable[[ImportResult, int], None] | None = None,
               on_error: Callable[[Exception], None] | None = None) -> None:
        """Poll until ``until()``; a page that was full is followed at once. A server
        that cannot be read is retried (with ``on_error`` told), never skipped."""
        while not until():
            try:
                res, n = self.poll()
            except MetadataSourceError as e:
                if on_error is not None:
                    on_error(e)
                time.sleep(max(interval, 1.0))
                continue
            if on_result is not None and n:
                on_result(res, n)
            if n < self.page:
                time.sleep(interval)
