"""Services that use the log and the verifier together: the HTTP verdict server.

docs/ARCHITECTURE.md: ``ingest`` and ``verifier`` do not import each other; what needs both sits
here, above them, and ``cli/`` is a thin command over it.
"""
import trustlog.verifier  # noqa: F401,E402  (registers trustlog.core.crypto_hook's default)
