"""A small client for the OCI distribution API: what a registry actually serves.

Reading (the sweep): ``/v2/_catalog`` and ``/v2/<name>/tags/list`` with their ``Link``
pagination, and a manifest ``HEAD`` for the ``Docker-Content-Digest`` the registry
serves for a tag. Writing (tests and benchmarks build registries with it): a monolithic
blob upload and a manifest ``PUT``.

Everything a registry returns is untrusted input: names, tags and digests are checked
against the distribution grammar before they are used, and every failure is a
:class:`RegistryError` with the URL in its message. One persistent HTTP connection per
thread (``http.client``), so a sweep pays for a TCP handshake once, not once per tag.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from trustlog.core.errors import TrustlogError
from trustlog.core.names import is_digest

# The manifest media types a registry may serve for a tag; a HEAD that accepts all of
# them gets the digest of whatever was pushed (image manifest or index).
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

MAX_PAGE_BYTES = 16 * 1024 * 1024
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class RegistryError(TrustlogError):
    """The registry could not be read (or written): unreachable, an HTTP error, or a
    response that does not follow the distribution API."""


@dataclass(frozen=True)
class Served:
    """What the registry serves for one tag."""

    repo: str
    tag: str
    digest: str | None  # None: the registry's answer carried no (valid) digest
    error: str | None = None


class RegistryClient:
    """The distribution API of one registry, e.g. ``http://127.0.0.1:5000``."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0, page_size: int = 1000, ca_file: str | None = None) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise RegistryError(f"{url!r}: a registry URL looks like http://HOST:PORT or https://HOST")
        if u.path not in ("", "/"):
            raise RegistryError(f"{url!r}: give the registry's base URL, without a path")
        self.url = f"{u.scheme}://{u.netloc}"
        self.host = u.netloc
        self._hostname, self._port = u.hostname, u.port
        self._timeout = timeout
        self.page_size = page_size
        self._ssl = ssl.create_default_context(cafile=ca_file) if u.scheme == "https" else None
        self._auth = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
                      if username is not None else None)
        self._local = threading.local()

    # -- transport ---------------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._ssl is not None:
                c = http.client.HTTPSConnection(self._hostname, self._port, timeout=self._timeout,
                                                context=self._ssl)
            else:
                c = http.client.HTTPConnection(self._hostname, self._port, timeout=self._timeout)
            self._local.conn = c
        return c

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request on this thread's connection; a connection the server closed is
        reopened once. Returns (status, lower-cased headers, body)."""
        h = {"User-Agent": "trustlog-sweep"}
        if self._auth:
            h["Authorization"] = self._auth
        h.update(headers or {})
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read(MAX_PAGE_BYTES + 1)
                if len(data) > MAX_PAGE_BYTES:
                    self._drop()
                    raise RegistryError(f"{self.url}{path}: response larger than {MAX_PAGE_BYTES} bytes")
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self._drop()
                return resp.status, hdrs, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest):
                self._drop()
                if attempt:
                    raise RegistryError(f"{self.url}{path}: the registry closed the connection") from None
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                raise RegistryError(f"{self.url}{path}: {e}") from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop()

    # -- reading -----------------------------------------------------------------------

    def check(self) -> None:
        """The API version check (``GET /v2/``)."""
        status, _, _ = self.request("GET", "/v2/")
        if status == 401:
            raise RegistryError(f"{self.url}/v2/: the registry asks for credentials (--username, "
                                "TRUSTLOG_REGISTRY_PASSWORD)")
        if status != 200:
            raise RegistryError(f"{self.url}/v2/: HTTP {status}; is this an OCI distribution registry?")

    def _paged(self, path: str, field: str) -> Iterator[str]:
        """Follow ``Link: <...>; rel="next"`` pages, yielding the strings in ``field``."""
        seen: set[str] = set()
        nxt: str | None = path
        while nxt is not None:
            if nxt in seen:
                raise RegistryError(f"{self.url}{nxt}: the registry's pagination loops")
            seen.add(nxt)
            status, hdrs, data = self.request("GET", nxt)
            if status == 404 and field == "tags":
                return
            if status != 200:
                raise RegistryError(f"{self.url}{nxt}: HTTP {status}: {data[:200]!r}")
            try:
                doc = json.loads(data)
                items = doc.get(field) or []
                if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                    raise ValueError(f"{field!r} is not a list of strings")
            except (ValueError, AttributeError) as e:
                raise RegistryError(f"{self.url}{nxt}: not a distribution API answer: {e}") from e
            yield from items
            m = _LINK_NEXT_RE.search(hdrs.get("link", ""))
            nxt = None
            if m:
                target = urllib.parse.urlsplit(urllib.parse.urljoin(self.url + path, m.group(1)))
                if target.netloc and target.netloc != self.host:
                    raise RegistryError(f"{self.url}{path}: pagination points to another host "
                                        f"({target.netloc}); refusing to follow")
                nxt = target.path + (f"?{target.query}" if target.query else "")

    def catalog(self) -> Iterator[str]:
        """Every repository name the registry lists (``/v2/_catalog``), page by page."""
        return self._paged(f"/v2/_catalog?n={self.page_size}", "repositories")

    def tags(self, repo: str) -> Iterator[str]:
        """Every tag of ``repo`` (``/v2/<name>/tags/list``); none for a repository with none."""
        return self._paged(f"/v2/{repo}/tags/list?n={self.page_size}", "tags")

    def served_digest(self, repo: str, tag: str) -> Served:
        """The digest the registry serves for ``repo:tag`` (manifest ``HEAD``)."""
        try:
            status, hdrs, _ = self.request("HEAD", f"/v2/{repo}/manifests/{urllib.parse.quote(tag)}",
                                           headers={"Accept": MANIFEST_ACCEPT})
        except RegistryError as e:
            return Served(repo, tag, None, str(e))
        if status != 200:
            return Served(repo, tag, None, f"manifest HEAD: HTTP {status}")
        digest = hdrs.get("docker-content-digest", "")
        if not is_digest(digest):
            return Served(repo, tag, None, f"manifest HEAD: no valid Docker-Content-Digest ({digest[:80]!r})")
        return Served(repo, tag, digest)

    # -- writing (tests, benchmarks) ----------------------------------------------------

    def push_blob(self, repo: str, data: bytes) -> str:
        """Upload a blob (monolithic POST then PUT); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return digest
        status, hdrs, body = self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"",
                                          headers={"Content-Length": "0"})
        if status != 202 or "location" not in hdrs:
            raise RegistryError(f"{self.url}/v2/{repo}/blobs/uploads/: HTTP {status}: {body[:200]!r}")
        loc = urllib.parse.urlsplit(urllib.parse.urljoin(self.url, hdrs["location"]))
        q = urllib.parse.parse_qsl(loc.query) + [("digest", digest)]
        path = loc.path + "?" + urllib.parse.urlencode(q)
        status, _, body = self.request("PUT", path, body=data,
                                       headers={"Content-Type": "application/octet-stream"})
        if status != 201:
            raise RegistryError(f"{self.url}{loc.path}: blob PUT gave HTTP {status}: {body[:200]!r}")
        return digest

    def push_manifest(self, repo: str, tag: str, manifest: bytes, media_type: str = OCI_MANIFEST) -> str:
        status, hdrs, body = self.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                          headers={"Content-Type": media_type})
        if status != 201:
            raise RegistryError(f"{self.url}/v2/{repo}/manifests/{tag}: HTTP {status}: {body[:200]!r}")
        return hdrs.get("docker-content-digest") or "sha256:" + hashlib.sha256(manifest).hexdigest()

    def push_image(self, repo: str, tag: str, content: bytes) -> str:
        """A minimal one-layer OCI image whose layer is ``content``; returns the
        manifest digest the registry will serve for ``repo:tag``."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}, sort_keys=True).encode()
        cdig = self.push_blob(repo, config)
        ldig = self.push_blob(repo, content)
        manifest = image_manifest(cdig, len(config), ldig, len(content))
        return self.push_manifest(repo, tag, manifest)


def image_manifest(config_digest: str, config_size: int, layer_digest: str, layer_size: int,
                   annotations: dict[str, str] | None = None) -> bytes:
    """The bytes of a one-layer OCI image manifest (its SHA-256 is the image digest)."""
    m: dict = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    if annotations:
        m["annotations"] = annotations
    return json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
