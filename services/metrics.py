"""The Prometheus metrics of ``trustlog serve`` (``/metrics``), shared by the aiohttp
handlers (:mod:`.http`) and the fast path (:mod:`.fastpath`)."""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from trustlog.core.evaluate import Verdict

from .verdicts import VerdictService


class Metrics:
    """Prometheus metrics in a registry of their own (one server per process)."""

    def __init__(self, service: VerdictService) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("trustlog_serve_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("trustlog_serve_request_seconds", "HTTP request latency by endpoint", ["endpoint"],
                                 buckets=(.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                                 registry=r)
        self.verdicts = Counter("trustlog_serve_verdicts", "verdicts served, by code", ["code"], registry=r)
        st = service.status
        Gauge("trustlog_serve_state_version", "records of the log folded into the served state",
              registry=r).set_function(lambda: service.state_version)
        Gauge("trustlog_serve_lag_bytes", "bytes in the log's segments not yet folded (at the last follow)",
              registry=r).set_function(lambda: st.lag_bytes)
        Gauge("trustlog_serve_follow_age_seconds", "seconds since the log was last followed",
              registry=r).set_function(lambda: time.monotonic() - st.last_follow)
        Gauge("trustlog_serve_ready", "1 when caught up with the log and following it",
              registry=r).set_function(lambda: 1 if st.caught_up and not st.failed else 0)
        self._verdict_children: dict[str, Any] = {}

    def count_verdicts(self, verdicts: list[Verdict]) -> None:
        kids = self._verdict_children
        for v in verdicts:
            c = kids.get(v.code)
            if c is None:
                c = kids[v.code] = self.verdicts.labels(v.code)
            c.inc()
