#!/usr/bin/env bash
# Print a short sample of requests through the load balancers (which backend served each, and
# which load balancer holds the floating address), and where the monitoring host's Prometheus answers.
#   scripts/sample.sh URL COUNT [PROMETHEUS_URL [CLIENT_CONTAINER]]
# Without CLIENT_CONTAINER, URL must be on 127.0.0.1. With it, the requests are sent from that
# lab container (the floating address lives on the lab's network, which the host does not reach).
set -euo pipefail
url=${1:-https://127.0.0.1:8443}
count=${2:-9}
prometheus=${3:-}
client=${4:-}
run=(python3 -)
[[ -n $client ]] && run=(docker exec -i "$client" python3 -)
echo
echo "The tier answers at $url/   (health: $url/health)${client:+, from the lab container $client}"
"${run[@]}" "$url" "$count" <<'PY'
import ssl, sys, urllib.error, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
# The lab's certificate is self-signed (generated once, never in the repository);
# this sample skips verification, a browser will ask you to accept it.
context = ssl._create_unverified_context()
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
if [[ -n $client ]]; then
  address=$(sed -E 's#^[a-z]+://([^/:]+).*#\1#' <<<"$url")
  for name in $(docker ps --filter label=org.load-balancer-infra.lab --format '{{.Names}}' | sort); do
    if docker exec "$name" hostname -I | tr ' ' '\n' | grep -qxF "$address"; then
      echo "Answered by the load balancer holding $address: $name (keepalived moves it if that one fails)."
    fi
  done
  echo "From this machine, lb1 alone answers on https://127.0.0.1:8443 (HTTP on 8080 redirects there)."
fi
[[ -z $prometheus ]] && exit 0
python3 - "$prometheus" <<'PY'
import json, sys, time, urllib.request
prometheus = sys.argv[1]
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
