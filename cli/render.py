"""How a repository's trust state is shown: shared by `inspect` and `state --at`."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trustlog.core.state import RepoState, TagEntry

from .safe import plain, text
from .ui import UI


def roles_info(repo: RepoState) -> list[dict[str, Any]]:
    """The active roles of ``repo`` with their current key sets, for JSON and tables."""
    out = []
    for role, gid in sorted(repo.roles.items()):
        g = repo.grants[gid]
        out.append({"role": role, "threshold": g.threshold, "keys": list(g.keyids), "paths": list(g.paths),
                    "expires": g.expires, "set_at_offset": g.offset})
    return out


def tags_info(entries: Iterable[TagEntry]) -> list[dict[str, Any]]:
    return [{"tag": t.tag, "digest": t.digest, "role": t.role, "offset": t.offset} for t in entries]


def print_repo(ui: UI, roles: list[dict[str, Any]], compromised: dict[str, int], tags: list[dict[str, Any]],
               tags_title: str) -> None:
    """The roles table, the compromised keys (if any) and the tags table."""
    ui.table("roles", ["role", "threshold", "keys", "paths", "set at offset"],
             [[r["role"], r["threshold"], text("\n".join(plain(k[:16]) + "…" for k in r["keys"])),
               text(" ".join(plain(p) for p in r["paths"])),
               r["set_at_offset"]] for r in roles])
    if compromised:
        ui.table("compromised keys", ["key id", "since (log time, ns)"], [[k, v] for k, v in compromised.items()])
    if tags:
        ui.table(tags_title, ["tag", "digest", "role", "offset"],
                 [[t["tag"], t["digest"], t["role"], t["offset"]] for t in tags])
