#!/usr/bin/env bash
# Print a short sample of requests through the load balancer: which backend served each.
#   scripts/sample.sh URL COUNT      (URL must be on 127.0.0.1)
set -euo pipefail
url=${1:-https://127.0.0.1:8443}
count=${2:-9}
python3 - "$url" "$count" <<'PY'
import ssl, sys, urllib.error, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
# The lab's certificate is self-signed (generated on lb1, never in the repository);
# this sample skips verification, a browser will ask you to accept it.
context = ssl._create_unverified_context()
print()
print(f"The tier answers at {url}/   (health: {url}/health, metrics: {url}/metrics)")
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
PY
