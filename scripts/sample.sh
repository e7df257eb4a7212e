#!/usr/bin/env bash
# Print a short sample of requests through the load balancer: which backend served each.
# and where the monitoring host's Prometheus answers.
#   scripts/sample.sh URL COUNT [PROMETHEUS_URL]     (URLs must be on 127.0.0.1)
set -euo pipefail
url=${1:-https://127.0.0.1:8443}
count=${2:-9}
prometheus=${3:-}
python3 - "$url" "$count" "$prometheus" <<'PY'
import json, ssl, sys, urllib.error, urllib.request
url, count, prometheus = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# The lab's certificate is self-signed (generated on lb1, never in the repository);
# this sample skips verification, a browser will ask you to accept it.
context = ssl._create_unverified_context()
print()
print(f"The tier answers at {url}/   (health: {url}/health)")
if url.startswith("https://127.0.0.1:8443"):
    print("Plain HTTP on http://127.0.0.1:8080 redirects there. The certificate is self-signed.")
print(f"Sample of {count} requests, each on a new connection:")
for i in range(1, count + 1):
    try:
        with urllib.request.urlopen(url + "/", timeout=5, context=context) as r:
            status, headers = r.status, r.headers
    except urllib.error.HTTPError as e:
        status, headers = e.code, e.headers
    except OSError as e:
        print(f"  {i:2d}  error: {e}")
        continue
    backend = headers.get("X-Backend", "?")
    print(f"  {i:2d}  {status}  backend={backend:<8} request-id={headers.get('X-Request-ID', '?')}")
if prometheus:
    import time
    try:
        # Targets are "unknown" until their first scrape: give them a few intervals.
        for _ in range(30):
            with urllib.request.urlopen(prometheus + "/api/v1/targets?state=active", timeout=5) as r:
                targets = json.load(r)["data"]["activeTargets"]
            if all(t["health"] != "unknown" for t in targets):
                break
            time.sleep(1)
        up = sum(1 for t in targets if t["health"] == "up")
        print(f"Monitoring (Prometheus: dashboard, alerts, targets): {prometheus}/  ({up}/{len(targets)} targets up)")
        print(f"  per-backend view: {prometheus}/graph?g0.expr=instance:lbapp_http_requests:rate1m")
    except OSError as e:
        print(f"Monitoring: {prometheus} does not answer yet ({e})")
PY
