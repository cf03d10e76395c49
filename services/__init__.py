"""Services that use the log and the verifier together: the HTTP verdict server.

DESIGN.md: ``ingest`` and ``verifier`` do not import each other; what needs both sits
here, above them, and ``cli/`` is a thin command over it.
"""
