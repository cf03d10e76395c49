"""``python -m trustlog.cli.kafka_worker``: the Kafka ingest worker as a process.

The worker lives in ``trustlog.ingest.kafka_worker``; it is started from here because
the default signature check is registered by the layers above ``ingest``
(``trustlog.core.crypto_hook``), which importing ``trustlog.cli`` does.
"""
import sys

from trustlog.ingest.kafka_worker import main

if __name__ == "__main__":
    sys.exit(main())
