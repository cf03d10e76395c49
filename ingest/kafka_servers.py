"""The Kafka bootstrap string (``--bootstrap`` / ``--kafka``): its one parser.

Every Kafka client of trustlog (the ingest worker, the layout and outcomes topics, the
witness topic, the verify service, the CLI's publish and topic commands, the
benchmarks) takes its servers from :func:`bootstrap_servers`, so a blank after a comma
means the same everywhere (``tests/test_partitioning.py`` checks no module splits the
string itself). A leaf of ``ingest``: it imports nothing of the package.
"""
from __future__ import annotations

from trustlog.core.errors import InputError


def bootstrap_servers(bootstrap: str) -> list[str]:
    """``host:port[,host:port...]`` as the list kafka-python takes; blanks around and
    between the entries are ignored. One that names no server is an error."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers:
        raise InputError(f"Kafka bootstrap {bootstrap!r} names no server: write HOST:PORT[,HOST:PORT...]")
    return servers
