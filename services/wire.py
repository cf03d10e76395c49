"""The wire shapes of ``trustlog serve``: request and response bodies, the Gatekeeper
external-data provider protocol, image keys, and the limits on one request.

Both the aiohttp handlers (:mod:`.http`) and the fast path (:mod:`.fastpath`) decode
requests with these, so the two accept exactly the same bodies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from trustlog.core.evaluate import Verdict

Repo = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Digest = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}\Z")]  # \Z: "$" would admit a final newline


class VerifyItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    repo: Repo
    tag: Tag
    digest: Digest | None = None


class VerifyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    requests: list[VerifyItem]


class VerifyResponse(msgspec.Struct, frozen=True):
    state_version: int
    verdicts: list[Verdict]


class ProviderKeys(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: list[str]


class ProviderRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gatekeeper's ``externaldata.ProviderRequest`` (frameworks/constraint/pkg/externaldata)."""

    apiVersion: str
    kind: str
    request: ProviderKeys


PROVIDER_API_VERSIONS = ("externaldata.gatekeeper.sh/v1beta1", "externaldata.gatekeeper.sh/v1alpha1")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``trustlog serve --max-body-bytes/--max-items``)."""

    max_body_bytes: int = 1 << 20
    max_items: int = 10_000


DEFAULT_LIMITS = Limits()


def parse_image_key(key: str) -> VerifyItem:
    """``repo:tag`` or ``repo:tag@sha256:<hex>`` (the repository may hold a registry
    port, ``host:5000/team/app:v1``: the tag is after the last ``:`` past the last ``/``)."""
    ref, _, digest = key.partition("@")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon <= slash:
        raise ValueError(f"{key!r}: give an image as repo:tag or repo:tag@sha256:<64 hex> (a digest alone names "
                         "no tag, and trust is per tag)")
    return msgspec.convert({"repo": ref[:colon], "tag": ref[colon + 1:], **({"digest": digest} if digest else {})},
                           VerifyItem)
