"""Read-only maps shared by every repository until one writes: what most hold.

A registry holds tens of thousands of repositories, and most never see a key
compromise or a deleted tag and keep the two roles a ``RepoCreated`` gives them. Each
of those maps as a dict of its own costs 64 to 184 bytes a repository (a tenth of what
a repository's trust state costs besides its tags), so a new :class:`~core.state.RepoState`
shares one :class:`SharedMap` per kind instead, and the fold gives a repository a
dict of its own (:func:`owned`) on its first write.

A ``SharedMap`` *is* a dict (every reader, ``len``, ``in``, ``==``, ``{**m}``, msgspec
and C code that reads dicts work unchanged), and refuses every write made through
Python with a TypeError naming the fix: a write that forgot :func:`owned` fails loudly
instead of changing every repository's map at once. ``pop`` of a key it does not hold
is not a write and returns the default.
"""
from __future__ import annotations

from typing import Any, NoReturn, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SharedMap(dict):  # type: ignore[type-arg]
    """A dict that refuses writes: the shared default of a repository's map."""

    __slots__ = ()

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("this map is shared by every repository that has not written to it: "
                        "write to core.shared_maps.owned(repo, field) instead")

    __setitem__ = __delitem__ = setdefault = update = clear = popitem = __ior__ = _refuse

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self._refuse()
        if default:
            return default[0]
        raise KeyError(key)

    def copy(self) -> dict:  # type: ignore[type-arg]
        return dict(self)

    def __copy__(self) -> SharedMap:
        return self

    def __deepcopy__(self, _memo: Any) -> SharedMap:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (shared, (tuple(self.items()),))


_BY_ITEMS: dict[tuple[Any, ...], SharedMap] = {}


def shared(items: tuple[Any, ...]) -> SharedMap:
    """The one SharedMap holding ``items`` (a tuple of pairs, in order)."""
    m = _BY_ITEMS.get(items)
    if m is None:
        m = SharedMap()
        dict.update(m, items)
        m = _BY_ITEMS.setdefault(items, m)
    return m


NO_ENTRIES: SharedMap = shared(())


def no_entries() -> SharedMap:
    """The shared empty map (a ``default_factory``)."""
    return NO_ENTRIES


def shared_or_own(d: dict[K, V]) -> dict[K, V]:
    """``d``, or the shared empty map when ``d`` is empty (a map read from a snapshot)."""
    return d if d else NO_ENTRIES


def owned(obj: Any, field: str) -> dict[Any, Any]:
    """``obj.field`` as a dict of ``obj``'s own, to write to: a shared map is replaced by
    a copy first."""
    d = getattr(obj, field)
    if type(d) is SharedMap:
        d = dict(d)
        setattr(obj, field, d)
    return d  # type: ignore[no-any-return]
