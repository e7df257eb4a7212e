"""Prometheus metrics, and the JSON statistics derived from the same samples.

Two modes, chosen by prometheus_client's own ``PROMETHEUS_MULTIPROC_DIR``:

* single-process (unset): metrics live in a registry owned by the app, which also
  carries the default process/platform/GC collectors;
* multiprocess (set, as under gunicorn with several workers): every worker writes
  its values to files in that directory, and each scrape builds a fresh
  ``CollectorRegistry`` with a ``MultiProcessCollector`` so the answer covers ALL
  workers, including ones that have since exited. The ``process_*`` metrics then
  describe the parent process (the gunicorn master): its start time is the
  service's, and it lives as long as the service does.

A request is counted when its response is ready, just before it is sent. So a
``/metrics`` response covers every request completed before it, and shows up
itself in the next one: two successive scrapes differ by exactly one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE,
)
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

from .config import Config

# The classic Prometheus text format (0.0.4), pinned here rather than taken from
# prometheus_client, whose CONTENT_TYPE_LATEST moved on to text format 1.0.0.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON = "json"
TEXT = "text"
OPENMETRICS = "openmetrics"

UNMATCHED_ENDPOINT = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS_SAMPLE = "lbapp_http_requests_total"

# Media types /metrics can answer with, in order of preference on a tie.
_OFFERS = (
    ("application/json", JSON),
    ("application/openmetrics-text", OPENMETRICS),
    ("text/plain", TEXT),
)


def method_label(method: str) -> str:
    """Bound the label's values: any unusual method becomes ``OTHER``."""
    return method if method in KNOWN_METHODS else "OTHER"


class Metrics:
    """The app's metric objects and how to collect them."""

    def __init__(self, config: Config) -> None:
        self.multiproc_dir = config.multiproc_dir
        # In multiprocess mode this registry is never scraped (values live in
        # files); it just keeps the metric objects off the global default one.
        self.registry = CollectorRegistry(auto_describe=True)
        if not self.multiproc_dir:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.requests = Counter(
            "lbapp_http_requests",
            "HTTP requests served, by endpoint (route rule), method and status code.",
            ("endpoint", "method", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "lbapp_http_request_duration_seconds",
            "Time to produce the response, by endpoint (route rule), method and status code.",
            ("endpoint", "method", "status"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # A gauge, not an Info metric: Info does not work in multiprocess mode.
        self.build_info = Gauge(
            "lbapp_build_info",
            "Release running on this backend (always 1).",
            ("version", "display_name"),
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version=config.version, display_name=config.display_name).set(1)
        self.posts_received = Counter(
            "lbapp_posts_received",
            "POST /echo requests whose view started executing on this backend.",
            registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        labels = {"endpoint": endpoint, "method": method_label(method), "status": str(status)}
        self.duration.labels(**labels).observe(seconds)
        self.requests.labels(**labels).inc()

    def collect_registry(self) -> CollectorRegistry:
        """The registry to expose for one scrape (fresh in multiprocess mode)."""
        if self.multiproc_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiproc_dir)
            ProcessCollector(pid=lambda: os.getppid(), registry=registry)
            return registry
        return self.registry


def request_stats(registry: CollectorRegistry) -> dict:
    """Total and per-endpoint/status/method request counts from collected samples."""
    total = 0
    by_endpoint: dict[str, int] = {}
    by_status: dict[str, int] = {}
    by_method: dict[str, int] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name != REQUESTS_SAMPLE:
                continue
            count = int(sample.value)
            total += count
            for key, bucket in (
                ("endpoint", by_endpoint),
                ("status", by_status),
                ("method", by_method),
            ):
                label = sample.labels.get(key, "")
                bucket[label] = bucket.get(label, 0) + count
    return {
        "total": total,
        "by_endpoint": by_endpoint,
        "by_status": by_status,
        "by_method": by_method,
    }


def exposition(fmt: str, registry: CollectorRegistry) -> tuple[bytes, str]:
    """Render ``registry`` as Prometheus text (``TEXT``) or OpenMetrics."""
    if fmt == OPENMETRICS:
        return generate_openmetrics(registry), OPENMETRICS_CONTENT_TYPE
    return generate_text(registry), TEXT_CONTENT_TYPE


def _parse_accept(header: str) -> Iterable[tuple[str, float]]:
    for item in header.split(","):
        parts = [part.strip() for part in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        yield media, max(0.0, min(quality, 1.0))


def negotiate(accept: str | None) -> str:
    """Pick ``JSON``, ``TEXT`` or ``OPENMETRICS`` for an ``Accept`` header.

    Media-type parameters other than ``q`` (Prometheus sends ``version=`` and
    ``escaping=``) are ignored. JSON wins ties and is the fallback, so browsers,
    curl without ``Accept`` and ``*/*`` get JSON.
    """
    if not accept:
        return JSON
    ranges = list(_parse_accept(accept))
    best, best_quality = JSON, 0.0
    for offer, name in _OFFERS:
        major = offer.split("/")[0] + "/*"
        quality: float | None = None
        specificity = -1
        for media, q in ranges:
            rank = 2 if media == offer else 1 if media == major else 0 if media == "*/*" else -1
            if rank > specificity:
                specificity, quality = rank, q
        if quality is not None and quality > best_quality:
            best, best_quality = name, quality
    return best
