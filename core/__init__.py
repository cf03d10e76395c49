"""The domain, with no I/O: keys, names, encoding, events, the fold and its rules.

Importing the package puts every rule in the fold's table: the rule for imported
TUF / Notary metadata lives in :mod:`.tuf_fold` and registers itself with
:mod:`.state` (which does not import it: that would be an import cycle).
"""
from . import tuf_fold as _tuf_fold  # noqa: F401  (registers the MetadataImported rule)
