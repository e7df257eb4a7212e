#!/usr/bin/env python3
"""Bounded HTTP load driver: the kinds of traffic browsers send, all at once, each counted.

Standard library only (Python >= 3.9), except the h2 kind, which imports the h2 protocol
library lazily (Debian: python3-h2, 4.x). The tests copy it to a load
balancer and run it there against NGINX on loopback (certificates are not checked):

    python3 loaddriver.py --url https://127.0.0.1:443/ --mix close=2,keepalive=1,h2=1,post=1 \
        --rate 100 --max-seconds 120 --stop-file /tmp/load.stop --out /tmp/load.json

--mix lists `kind=threads` (0 turns a kind off; 1-64 threads in all; --threads N is
shorthand for --mix close=N). --rate is the total over all threads, paced per thread.
Kinds:
  close      GET, a new connection per request with "Connection: close".
  keepalive  GET over one persistent HTTP/1.1 connection per thread.
  h2         GET over one persistent HTTP/2-over-TLS connection per thread. If the
             server does not negotiate HTTP/2, the run stops at once and exits 3.
  post       POST of a small JSON body to --post-url (default /echo, joined to --url), a new
             connection each, header X-Request-ID "<--post-id-prefix>-<n>"; never retried.
A request fails when it answers anything but 2xx or raises any error (refused, reset,
timeout, ...). After an error, the keepalive and h2 threads open a new connection.

keepalive and idle connections closed by the server (keep-alive timeout, graceful reload):
  - before reusing an idle connection, the driver checks whether the server has already
    closed it (anything readable on an idle connection); if so it opens a new one and
    sends the request there: nothing was sent on the old one, so nothing is counted;
  - if sending the request on a reused connection fails with BrokenPipe/ConnectionReset/
    ConnectionAborted, no byte of it left the host: the request is sent once more on a new
    connection and only that attempt counts (its time includes the first attempt);
  - every other error counts as a failure and is not retried, including RemoteDisconnected
    (no answer after the request was sent: the server may have received it).
h2 and GOAWAY (graceful reload, keepalive_requests reached, idle timeout): a stream at or
below the GOAWAY's last_stream_id is still answered and waited for; one above it, or one
refused with REFUSED_STREAM, was never processed: it is sent once more on a new connection
and only that attempt counts (counted as "retried"). Everything else counts as a failure.

--retry-once-after S (off by default) gives each GET a second chance, as a client that retries a
failed connection once does: a GET that got no HTTP answer at all (refused, reset, timed out) is sent
once more on a new connection after S seconds; only that attempt counts (its time includes the
wait), and by_kind counts such GETs as "second_tries".

It runs until the stop file appears, --max-seconds have passed, or a fatal error (h2 not
negotiated, a crashed thread), then writes one JSON summary to --out (atomically) and one
line to stdout (the same without per_second and records). "<out>.ready" is created once
every GET kind of the mix has had a 2xx answer (the first POST 2xx if the mix has no GET).
Summary: the top-level counters (requests, failed, slowest_s, slowest_at_s,
slowest_backend, p50_s, p99_s, statuses, errors, failures, backends, per_second, and
longest_gap_s / longest_gap_at_s: the longest time without a 2xx answer, from the first to the
end of the run) cover the GETs of all kinds together; rate_per_s and target_rate_per_s cover every request. Also:
started_at_epoch (time.time() at the start; every at_s/offset is seconds after it), mix,
by_kind (the counters per kind, and connections, idle_closed, retried, second_tries), posts
({"answered_2xx": [ids], "failed": [{id, status, error, at_s, seconds}]}), kinds and
records ([offset_s, seconds, kind index in kinds, status (0 on error), X-Backend] for every
request), unfinished (requests still running when the threads were given up; counted as
failed) and fatal (the message, or null). Exit status: 0, 2 bad usage or h2 missing,
3 fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib
import json
import os
import secrets
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse

KINDS = ("close", "keepalive", "h2", "post")
DEFAULT_MIX = "close=2,keepalive=1,h2=1,post=1"
MAX_FAILURE_SAMPLES = 20
MAX_ERROR_CHARS = 300
# Bounds the summary even at --rate 0 for an hour; records (and post IDs) beyond it are only counted.
MAX_RECORDS = 500_000
USER_AGENT = "lbi-loaddriver"
# Load, not certificate checks: the lab's certificate is self-signed.
TLS = ssl._create_unverified_context()
# No byte of the request was accepted by the kernel: it cannot have reached the server.
UNSENT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
GOAWAY_FRAME = 0x7  # the HTTP/2 frame type


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


class Tally:
    """Counters for one set of requests (all GETs, or one kind)."""

    def __init__(self) -> None:
        self.requests = 0
        self.failed = 0
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.failures: list[dict] = []
        self.backends: dict[str, int] = {}
        self.durations: list[float] = []
        self.slowest = 0.0
        self.slowest_at = 0.0
        self.slowest_backend = ""

    def add(self, kind: str, offset: float, seconds: float, status: int, backend: str, error: str) -> None:
        self.requests += 1
        self.durations.append(seconds)
        if status:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if backend:
            self.backends[backend] = self.backends.get(backend, 0) + 1
        if seconds > self.slowest:
            self.slowest, self.slowest_at, self.slowest_backend = seconds, offset, backend
        if error or not 200 <= status < 300:
            self.failed += 1
            key = error.split(":", 1)[0] if error else f"HTTP {status}"
            self.errors[key] = self.errors.get(key, 0) + 1
            if len(self.failures) < MAX_FAILURE_SAMPLES:
                self.failures.append(
                    {
                        "at_s": round(offset, 3),
                        "seconds": round(seconds, 3),
                        "kind": kind,
                        "status": status,
                        "error": error,
                    }
                )

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "slowest_s": round(self.slowest, 4),
            "slowest_at_s": round(self.slowest_at, 3),
            "slowest_backend": self.slowest_backend,
            "p50_s": round(percentile(self.durations, 0.50), 4),
            "p99_s": round(percentile(self.durations, 0.99), 4),
            "statuses": self.statuses,
            "errors": self.errors,
            "failures": self.failures,
            "backends": self.backends,
        }


class Stats:
    """Everything the worker threads report (one lock, short critical sections)."""

    def __init__(self, start: float, kinds: list[str], ready_file: str) -> None:
        self.start = start
        self.kinds = kinds
        self.lock = threading.Lock()
        self.gets = Tally()
        self.by_kind = {kind: Tally() for kind in kinds}
        self.extra = {kind: {"connections": 0, "idle_closed": 0, "retried": 0, "second_tries": 0} for kind in kinds}
        # Per second of the run (GETs only): requests, failures, and answers per backend.
        self.per_second: list[dict] = []
        self.records: list[list] = []
        self.records_dropped = 0
        self.posts_ok: list[str] = []
        self.posts_failed: list[dict] = []
        self.post_number = 0
        self.in_flight: dict[int, tuple[str, float, str]] = {}
        self.unfinished = 0
        self.closed = False
        self.fatal: str | None = None
        get_kinds = [kind for kind in kinds if kind != "post"]
        self.waiting = set(get_kinds or ["post"])
        self.ready_file = ready_file

    def next_post_id(self, prefix: str) -> str:
        with self.lock:
            self.post_number += 1
            return f"{prefix}-{self.post_number}"

    def count(self, kind: str, counter: str) -> None:
        with self.lock:
            self.extra[kind][counter] += 1

    def begin(self, slot: int, kind: str, post_id: str = "") -> float:
        began = time.monotonic()
        with self.lock:
            self.in_flight[slot] = (kind, began, post_id)
        return began

    def record(self, slot: int, seconds: float, status: int, backend: str, error: str) -> None:
        with self.lock:
            if self.closed or slot not in self.in_flight:
                return
            kind, began, post_id = self.in_flight.pop(slot)
            self._add(kind, began, seconds, status, backend, error, post_id)

    def _add(self, kind: str, began: float, seconds: float, status: int, backend: str, error: str, post_id: str):
        offset = began - self.start
        ok = not error and 200 <= status < 300
        self.by_kind[kind].add(kind, offset, seconds, status, backend, error)
        kept = len(self.records) < MAX_RECORDS
        if kept:
            self.records.append([round(offset, 4), round(seconds, 4), self.kinds.index(kind), status, backend])
        else:
            self.records_dropped += 1
        if kind == "post":
            if kept and ok:
                self.posts_ok.append(post_id)
            elif kept:
                self.posts_failed.append(
                    {
                        "id": post_id,
                        "status": status,
                        "error": error,
                        "at_s": round(offset, 3),
                        "seconds": round(seconds, 3),
                    }
                )
        else:
            self.gets.add(kind, offset, seconds, status, backend, error)
            index = int(offset)
            while len(self.per_second) <= index:
                self.per_second.append({"requests": 0, "failed": 0, "backends": {}})
            bucket = self.per_second[index]
            bucket["requests"] += 1
            bucket["failed"] += 0 if ok else 1
            if backend:
                bucket["backends"][backend] = bucket["backends"].get(backend, 0) + 1
        if ok and kind in self.waiting:
            self.waiting.discard(kind)
            if not self.waiting:
                with open(self.ready_file, "w") as handle:
                    handle.write("ready\n")

    def set_fatal(self, message: str, stop: threading.Event) -> None:
        with self.lock:
            self.fatal = self.fatal or message
        stop.set()

    def finish(self) -> None:
        """Count requests still running (threads given up on) as failed, and ignore later reports."""
        now = time.monotonic()
        with self.lock:
            for kind, began, post_id in self.in_flight.values():
                self.unfinished += 1
                self._add(kind, began, now - began, 0, "", "Unfinished: no answer when the run ended", post_id)
            self.in_flight.clear()
            self.closed = True


def request_path(target: urllib.parse.SplitResult) -> str:
    return urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))


def new_connection(target: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return http.client.HTTPSConnection(target.hostname, target.port or 443, timeout=timeout, context=TLS)
    return http.client.HTTPConnection(target.hostname, target.port or 80, timeout=timeout)


def one_shot(target, timeout: float, method: str, headers: dict, body: bytes | None = None) -> tuple[int, str, str]:
    """One request on a fresh connection, closed after; returns (status, X-Backend, error text)."""
    conn = new_connection(target, timeout)
    try:
        conn.request(
            method,
            request_path(target),
            body=body,
            headers={"Connection": "close", "User-Agent": USER_AGENT, **headers},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Backend", ""), ""
    except Exception as exc:  # every connection-level problem is a failed request
        return 0, "", describe(exc)
    finally:
        conn.close()


def idle_closed(sock) -> bool:
    """An idle connection has nothing to read unless the server closed it (EOF, TLS close_notify, ...)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class Close:
    kind = "close"

    def __init__(self, ctx: dict, stats: Stats, slot: int) -> None:
        self.ctx, self.stats, self.slot = ctx, stats, slot

    def attempt(self) -> tuple[int, str, str, bool]:
        self.stats.count(self.kind, "connections")
        return (*one_shot(self.ctx["target"], self.ctx["timeout"], "GET", {}), False)

    def second_chance(self, result: tuple) -> tuple:
        """--retry-once-after: a GET that got no HTTP answer is sent once more, after the wait.
        Also one that ends after the stop: it would fail only because the run ended meanwhile."""
        delay = self.ctx["retry_once_after"]
        if delay is None or result[0] != 0:
            return result
        self.stats.count(self.kind, "second_tries")
        time.sleep(delay)
        return self.attempt()

    def once(self) -> None:
        began = self.stats.begin(self.slot, self.kind)
        status, backend, error, _ = self.second_chance(self.attempt())
        self.stats.record(self.slot, time.monotonic() - began, status, backend, error)

    def close(self) -> None:
        pass


class Post(Close):
    kind = "post"

    def once(self) -> None:
        post_id = self.stats.next_post_id(self.ctx["post_prefix"])
        body = json.dumps({"id": post_id, "from": USER_AGENT}).encode()
        headers = {"X-Request-ID": post_id, "Content-Type": "application/json"}
        began = self.stats.begin(self.slot, self.kind, post_id)
        self.stats.count(self.kind, "connections")
        status, backend, error = one_shot(self.ctx["post_target"], self.ctx["timeout"], "POST", headers, body)
        self.stats.record(self.slot, time.monotonic() - began, status, backend, error)


class KeepAlive(Close):
    kind = "keepalive"

    def __init__(self, ctx: dict, stats: Stats, slot: int) -> None:
        super().__init__(ctx, stats, slot)
        self.conn = new_connection(ctx["target"], ctx["timeout"])

    def attempt(self) -> tuple[int, str, str, bool]:
        """One GET on self.conn (opened if needed); the last item: the request provably was not sent."""
        reused = self.conn.sock is not None
        if not reused:
            self.stats.count(self.kind, "connections")
        headers = {"User-Agent": USER_AGENT}
        try:
            self.conn.request("GET", request_path(self.ctx["target"]), headers=headers)
        except UNSENT_ERRORS as exc:
            self.conn.close()
            return 0, "", describe(exc), reused
        except Exception as exc:
            self.conn.close()
            return 0, "", describe(exc), False
        try:
            resp = self.conn.getresponse()
            resp.read()
            return resp.status, resp.getheader("X-Backend", ""), "", False
        except Exception as exc:
            self.conn.close()
            return 0, "", describe(exc), False

    def once(self) -> None:
        began = self.stats.begin(self.slot, self.kind)
        if self.conn.sock is not None and idle_closed(self.conn.sock):
            self.conn.close()
            self.stats.count(self.kind, "idle_closed")
        status, backend, error, unsent = self.attempt()
        if unsent:
            self.stats.count(self.kind, "retried")
            status, backend, error, _ = self.attempt()
        status, backend, error, _ = self.second_chance((status, backend, error, False))
        self.stats.record(self.slot, time.monotonic() - began, status, backend, error)

    def close(self) -> None:
        self.conn.close()


class H2Session:
    """One HTTP/2-over-TLS connection (the h2 protocol library), one stream at a time.

    GOAWAY is handled as RFC 9113 says and browsers do: streams up to its last_stream_id
    are still answered; a stream above it was never processed, which is reported so the
    caller can send it again on a new connection. The h2 library closes its state machine
    on a GOAWAY and then rejects the answers still due, so GOAWAY frames are taken out of
    the byte stream here and never reach it.
    """

    def __init__(self, ctx: dict) -> None:
        target = ctx["target"]
        self.h2 = ctx["h2"]
        self.authority = target.netloc
        self.timeout = ctx["timeout"]
        tls = ssl._create_unverified_context()
        tls.set_alpn_protocols(["h2"])
        raw = socket.create_connection((target.hostname, target.port or 443), timeout=self.timeout)
        try:
            self.sock = tls.wrap_socket(raw, server_hostname=target.hostname)
        except BaseException:
            raw.close()
            raise
        if self.sock.selected_alpn_protocol() != "h2":
            self.close()
            raise NotHTTP2(f"ALPN chose {self.sock.selected_alpn_protocol()!r}, not h2")
        config = self.h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = self.h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.goaway: int | None = None  # last_stream_id of a GOAWAY received
        self.pending = b""  # bytes of a frame not complete yet

    def frames(self, data: bytes) -> tuple[list, list]:
        """Split received bytes into GOAWAYs, as (last_stream_id, error_code), and h2 events."""
        self.pending += data
        passed, goaways = bytearray(), []
        while len(self.pending) >= 9:
            end = 9 + int.from_bytes(self.pending[:3], "big")
            if len(self.pending) < end:
                break
            frame, self.pending = self.pending[:end], self.pending[end:]
            if frame[3] == GOAWAY_FRAME:
                last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
                goaways.append((last, int.from_bytes(frame[13:17], "big")))
            else:
                passed += frame
        return goaways, (self.conn.receive_data(bytes(passed)) if passed else [])

    def get(self, path: str) -> tuple[int, str, str, bool]:
        """(status, X-Backend, error, unprocessed): unprocessed means the server never handled it."""
        events = self.h2.events
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
            ("user-agent", USER_AGENT),
        ]
        self.conn.send_headers(stream, headers, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status, backend = 0, ""
        deadline = time.monotonic() + self.timeout
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                unprocessed = self.goaway is not None and stream > self.goaway
                return 0, "", "ConnectionClosed: the server closed the connection", unprocessed
            goaways, received = self.frames(data)
            for last, code in goaways:
                self.goaway = last
                if stream > last:
                    return 0, "", f"GOAWAY before stream {stream} (last {last})", True
                if code:
                    return 0, "", f"GOAWAY: error code {code}", False
            for event in received:
                if getattr(event, "stream_id", None) != stream:
                    continue
                elif isinstance(event, events.ResponseReceived):
                    fields = dict(event.headers)
                    status, backend = int(fields.get(":status", "0")), fields.get("x-backend", "")
                elif isinstance(event, events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, events.StreamReset):
                    refused = event.error_code == self.h2.errors.ErrorCodes.REFUSED_STREAM
                    return 0, "", f"RST_STREAM: error code {event.error_code}", refused
                elif isinstance(event, events.StreamEnded):
                    pending = self.conn.data_to_send()
                    if pending:
                        self.sock.sendall(pending)
                    return status, backend, "", False
            pending = self.conn.data_to_send()
            if pending:
                self.sock.sendall(pending)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.close()


class NotHTTP2(Exception):
    pass


class H2(Close):
    kind = "h2"

    def __init__(self, ctx: dict, stats: Stats, slot: int) -> None:
        super().__init__(ctx, stats, slot)
        self.session: H2Session | None = None

    def attempt(self) -> tuple[int, str, str, bool]:
        try:
            if self.session is None or self.session.goaway is not None:
                self.close()
                self.session = H2Session(self.ctx)
                self.stats.count(self.kind, "connections")
            result = self.session.get(request_path(self.ctx["target"]))
        except NotHTTP2 as exc:
            self.stats.set_fatal(f"h2: HTTP/2 was not negotiated by {self.ctx['url']}: {exc}", self.ctx["stop"])
            result = (0, "", f"NotHTTP2: {exc}", False)
        except Exception as exc:  # connection-level problems are failed requests
            result = (0, "", describe(exc), False)
        if result[2]:
            self.close()
        return result

    def once(self) -> None:
        began = self.stats.begin(self.slot, self.kind)
        status, backend, error, unprocessed = self.attempt()
        if unprocessed:
            self.stats.count(self.kind, "retried")
            status, backend, error, _ = self.attempt()
        status, backend, error, _ = self.second_chance((status, backend, error, False))
        self.stats.record(self.slot, time.monotonic() - began, status, backend, error)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


RUNNERS = {"close": Close, "keepalive": KeepAlive, "h2": H2, "post": Post}


def worker(runner: Close, interval: float, phase: float, stats: Stats, stop: threading.Event) -> None:
    # Threads start spread over one interval, so that paced requests do not come in bursts.
    next_at = time.monotonic() + phase - interval
    try:
        while not stop.is_set():
            if interval:
                # Paced: one request every `interval` seconds; a late thread does not burst to catch up.
                next_at = max(next_at + interval, time.monotonic() - interval)
                if stop.wait(max(0.0, next_at - time.monotonic())):
                    break
            runner.once()
    except Exception as exc:  # a bug, not a failed request: stop the run loudly
        stats.set_fatal(f"{runner.kind} thread crashed: {describe(exc)}", stop)
    finally:
        runner.close()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse_mix(text: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for item in text.split(","):
        name, sep, count = (part.strip() for part in item.partition("="))
        if not sep or name not in KINDS or name in mix or not count.isdigit():
            raise argparse.ArgumentTypeError(f"{item.strip()!r}: want kind=threads, kind one of {', '.join(KINDS)}")
        mix[name] = int(count)
    mix = {name: count for name, count in mix.items() if count}
    if not 1 <= sum(mix.values()) <= 64:
        raise argparse.ArgumentTypeError("1-64 threads in all")
    return mix


def longest_gap(records: list, get_kinds: set, elapsed: float) -> tuple[float, float]:
    """The longest time without a 2xx GET answer, from the first one to the end of the run, and
    when it began: what a user of the site sees during an outage."""
    done = sorted(r[0] + r[1] for r in records if r[2] in get_kinds and 200 <= r[3] < 300)
    gaps = [(after - before, before) for before, after in zip(done, [*done[1:], elapsed])]
    longest, at = max(gaps, default=(0.0, 0.0))
    return round(max(longest, 0.0), 3), round(at, 3)


def summary(stats: Stats, mix: dict[str, int], rate: float, elapsed: float, stopped_by: str, epoch: float) -> dict:
    with stats.lock:
        gap, gap_at = longest_gap(stats.records, {i for i, k in enumerate(stats.kinds) if k != "post"}, elapsed)
        every = sum(tally.requests for tally in stats.by_kind.values())
        by_kind = {}
        for kind, tally in stats.by_kind.items():
            counters = tally.summary()
            for key in ("slowest_at_s", "slowest_backend"):
                counters.pop(key)
            by_kind[kind] = {**counters, **stats.extra[kind]}
        return {
            **stats.gets.summary(),
            "duration_s": round(elapsed, 3),
            "rate_per_s": round(every / elapsed, 1) if elapsed > 0 else 0.0,
            "threads": sum(mix.values()),
            "target_rate_per_s": rate,
            "stopped_by": stopped_by,
            "longest_gap_s": gap,
            "longest_gap_at_s": gap_at,
            "fatal": stats.fatal,
            "unfinished": stats.unfinished,
            "started_at_epoch": round(epoch, 4),
            "mix": mix,
            "by_kind": by_kind,
            "posts": {"answered_2xx": list(stats.posts_ok), "failed": list(stats.posts_failed)},
            "kinds": stats.kinds,
            "records_dropped": stats.records_dropped,
            "per_second": stats.per_second,
            "records": sorted(stats.records),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="https://127.0.0.1:443/", help="what the GETs ask for")
    parser.add_argument("--mix", type=parse_mix, default=None, help=f"kind=threads,... (default {DEFAULT_MIX})")
    parser.add_argument("--threads", type=int, default=None, help="shorthand for --mix close=N")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second in all (0: no limit)")
    parser.add_argument("--post-url", default="/echo", help="where the POSTs go, joined to --url")
    parser.add_argument("--post-id-prefix", default=f"lbi-post-{secrets.token_hex(4)}", help="X-Request-ID prefix")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="hard limit of the run")
    parser.add_argument("--stop-file", default="", help="stop as soon as this file exists")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request before it fails")
    parser.add_argument("--retry-once-after", type=float, default=None, help="seconds before a GET's second chance")
    parser.add_argument("--out", required=True, help="where the JSON summary is written")
    args = parser.parse_args(argv)
    if args.threads is not None and args.mix is not None:
        parser.error("--threads is shorthand for --mix close=N: give one of them")
    if args.threads is not None and not 1 <= args.threads <= 64:
        parser.error("--threads must be 1-64")
    mix = {"close": args.threads} if args.threads is not None else args.mix or parse_mix(DEFAULT_MIX)
    if not 0 < args.max_seconds <= 3600 or args.rate < 0 or not 0 < args.timeout <= 600:
        parser.error("--max-seconds must be 0-3600, --timeout 0-600 and --rate >= 0")
    target = urllib.parse.urlsplit(args.url)
    post_target = urllib.parse.urlsplit(urllib.parse.urljoin(args.url, args.post_url))
    for url in (target, post_target):
        if url.scheme not in ("http", "https") or not url.hostname:
            parser.error("--url and --post-url must be http:// or https:// URLs")
    if args.retry_once_after is not None and not 0 <= args.retry_once_after <= 60:
        parser.error("--retry-once-after must be 0-60 seconds")
    ctx = {"url": args.url, "target": target, "post_target": post_target, "timeout": args.timeout}
    ctx["retry_once_after"] = args.retry_once_after
    ctx["post_prefix"] = args.post_id_prefix
    if "h2" in mix:
        if target.scheme != "https":
            parser.error("the h2 kind needs an https:// --url (or h2=0 in --mix)")
        try:
            ctx["h2"] = importlib.import_module("h2")
            for part in ("config", "connection", "events", "errors"):
                importlib.import_module(f"h2.{part}")
        except ImportError as exc:
            parser.error(f"the h2 kind needs the h2 library (Debian: python3-h2), or h2=0 in --mix: {exc}")

    ready_file = args.out + ".ready"
    with contextlib.suppress(FileNotFoundError):
        os.remove(ready_file)  # a stale one would say load is flowing before it is
    stop = threading.Event()
    ctx["stop"] = stop
    epoch, start = time.time(), time.monotonic()
    stats = Stats(start, list(mix), ready_file)
    total = sum(mix.values())
    interval = total / args.rate if args.rate else 0.0
    slots = [kind for kind, count in mix.items() for _ in range(count)]
    threads = [
        threading.Thread(
            target=worker,
            args=(RUNNERS[kind](ctx, stats, slot), interval, interval * slot / total, stats, stop),
            daemon=True,
        )
        for slot, kind in enumerate(slots)
    ]
    for thread in threads:
        thread.start()
    stopped_by = "max-seconds"
    while time.monotonic() - start < args.max_seconds:
        if stop.is_set():
            stopped_by = "fatal"
            break
        if args.stop_file and os.path.exists(args.stop_file):
            stopped_by = "stop-file"
            break
        stop.wait(0.05)
    stop.set()
    deadline = time.monotonic() + (args.timeout + (args.retry_once_after or 0)) * 2 + 5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stats.finish()
    result = summary(stats, mix, args.rate, time.monotonic() - start, stopped_by, epoch)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, args.out)
    json.dump({k: v for k, v in result.items() if k not in ("per_second", "records")}, sys.stdout)
    sys.stdout.write("\n")
    if result["fatal"]:
        sys.stderr.write(f"loaddriver: {result['fatal']}\n")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
