"""The image's HEALTHCHECK: GET /health on the local gunicorn; exit 0 only on a 2xx answer.

Standard library only, no curl in the image. Proxy variables are ignored (the request never
leaves the container). A draining backend answers 503, so it reports unhealthy too.
"""

import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/health"


def main() -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(URL, timeout=2) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {URL} answered {exc.code}")
        return 1
    except OSError as exc:
        print(f"unhealthy: {URL}: {exc}")
        return 1
    print(f"healthy: {URL} answered {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
