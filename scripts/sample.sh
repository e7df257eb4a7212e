#!/usr/bin/env bash
# Print a short sample of requests through the load balancer: which backend served each.
#   scripts/sample.sh URL COUNT      (URL must be on 127.0.0.1)
set -euo pipefail
url=${1:-http://127.0.0.1:8080}
count=${2:-9}
echo
echo "The tier answers at $url   (health: $url/health, metrics: $url/metrics)"
echo "Sample of $count requests, each on a new connection:"
python3 - "$url" "$count" <<'PY'
import sys, urllib.request, urllib.error
url, count = sys.argv[1], int(sys.argv[2])
for i in range(1, count + 1):
    try:
        with urllib.request.urlopen(url + "/", timeout=5) as r:
            status, headers = r.status, r.headers
    except urllib.error.HTTPError as e:
        status, headers = e.code, e.headers
    except OSError as e:
        print(f"  {i:2d}  error: {e}")
        continue
    print(f"  {i:2d}  {status}  backend={headers.get('X-Backend', '?'):<8} request-id={headers.get('X-Request-ID', '?')}")
PY
