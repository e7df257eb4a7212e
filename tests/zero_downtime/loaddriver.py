#!/usr/bin/env python3
"""Bounded HTTP load driver: GET one URL from a few threads and count every failure.

Standard library only (Python >= 3.9), so it runs on any tier host as is. The tests
copy it to a load balancer and run it there against NGINX on loopback (http or https;
certificates are not checked):

    python3 loaddriver.py --url http://127.0.0.1:80/ --threads 4 \
        --max-seconds 120 --stop-file /tmp/load.stop --out /tmp/load.json

It runs until the stop file appears or --max-seconds have passed, whichever comes
first (it always stops by itself), then writes one JSON summary to --out (atomically)
and to stdout. Every request uses a new connection, so every request goes through
NGINX's accept path and its choice of backend. A request counts as failed when it
answers anything but 2xx or raises any error (refused, reset, timeout, ...).
Once the first request has succeeded, "<out>.ready" is created: load is flowing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

MAX_FAILURE_SAMPLES = 20


class Stats:
    """Counters shared by the worker threads (one lock, short critical sections)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.lock = threading.Lock()
        self.requests = 0
        self.failed = 0
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.failures: list[dict] = []
        self.slowest = 0.0
        self.slowest_at = 0.0
        self.slowest_backend = ""
        self.durations: list[float] = []
        # Per second of the run: requests, failures, and answers per backend.
        self.per_second: list[dict] = []
        self.backends: dict[str, int] = {}
        self.threads = 0
        self.target_rate = 0.0

    def _second(self, offset: float) -> dict:
        index = int(offset)
        while len(self.per_second) <= index:
            self.per_second.append({"requests": 0, "failed": 0, "backends": {}})
        return self.per_second[index]

    def record(self, began: float, seconds: float, status: int, backend: str, error: str) -> None:
        offset = began - self.start
        ok = error == "" and 200 <= status < 300
        with self.lock:
            self.requests += 1
            self.durations.append(seconds)
            bucket = self._second(offset)
            bucket["requests"] += 1
            if status:
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if backend:
                self.backends[backend] = self.backends.get(backend, 0) + 1
                bucket["backends"][backend] = bucket["backends"].get(backend, 0) + 1
            if seconds > self.slowest:
                self.slowest, self.slowest_at, self.slowest_backend = seconds, offset, backend
            if not ok:
                self.failed += 1
                bucket["failed"] += 1
                kind = error.split(":", 1)[0] if error else f"HTTP {status}"
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if len(self.failures) < MAX_FAILURE_SAMPLES:
                    self.failures.append(
                        {"at_s": round(offset, 3), "seconds": round(seconds, 3), "status": status, "error": error}
                    )


def one_request(target: urllib.parse.SplitResult, timeout: float) -> tuple[int, str, str]:
    """Send one GET on a fresh connection; return (status, X-Backend, error text)."""
    if target.scheme == "https":
        # Load, not certificate checks: the lab's certificate is self-signed.
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(target.hostname, target.port or 443, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=timeout)
    try:
        conn.request("GET", target.path or "/", headers={"Connection": "close", "User-Agent": "lbi-loaddriver"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Backend", ""), ""
    except Exception as exc:  # every connection-level problem is a failed request
        return 0, "", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def worker(target, timeout: float, interval: float, stats: Stats, stop: threading.Event, ready_file: str) -> None:
    announced = False
    next_at = time.monotonic()
    while not stop.is_set():
        if interval:
            # Paced: one request every `interval` seconds; a late thread does not burst to catch up.
            next_at = max(next_at + interval, time.monotonic() - interval)
            if stop.wait(max(0.0, next_at - time.monotonic())):
                break
        began = time.monotonic()
        status, backend, error = one_request(target, timeout)
        stats.record(began, time.monotonic() - began, status, backend, error)
        if not announced and not error and 200 <= status < 300:
            announced = True
            with open(ready_file, "w") as handle:
                handle.write("ready\n")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(stats: Stats, elapsed: float, stopped_by: str) -> dict:
    return {
        "requests": stats.requests,
        "failed": stats.failed,
        "slowest_s": round(stats.slowest, 4),
        "slowest_at_s": round(stats.slowest_at, 3),
        "slowest_backend": stats.slowest_backend,
        "p50_s": round(percentile(stats.durations, 0.50), 4),
        "p99_s": round(percentile(stats.durations, 0.99), 4),
        "duration_s": round(elapsed, 3),
        "rate_per_s": round(stats.requests / elapsed, 1) if elapsed > 0 else 0.0,
        "threads": stats.threads,
        "target_rate_per_s": stats.target_rate,
        "stopped_by": stopped_by,
        "statuses": stats.statuses,
        "errors": stats.errors,
        "failures": stats.failures,
        "backends": stats.backends,
        "per_second": stats.per_second,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="http://127.0.0.1:80/")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second in all (0: no limit)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="hard limit of the run")
    parser.add_argument("--stop-file", default="", help="stop as soon as this file exists")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request before it fails")
    parser.add_argument("--out", required=True, help="where the JSON summary is written")
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= 64 or not 0 < args.max_seconds <= 3600 or args.rate < 0:
        parser.error("--threads must be 1-64, --max-seconds 0-3600 and --rate >= 0")
    target = urllib.parse.urlsplit(args.url)
    if target.scheme not in ("http", "https") or not target.hostname:
        parser.error("--url must be an http:// or https:// URL")

    stop = threading.Event()
    start = time.monotonic()
    stats = Stats(start)
    stats.threads, stats.target_rate = args.threads, args.rate
    interval = args.threads / args.rate if args.rate else 0.0
    threads = [
        threading.Thread(
            target=worker, args=(target, args.timeout, interval, stats, stop, args.out + ".ready"), daemon=True
        )
        for _ in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    stopped_by = "max-seconds"
    while time.monotonic() - start < args.max_seconds:
        if args.stop_file and os.path.exists(args.stop_file):
            stopped_by = "stop-file"
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(args.timeout + 5)
    result = summary(stats, time.monotonic() - start, stopped_by)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, args.out)
    json.dump({k: v for k, v in result.items() if k != "per_second"}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
