"""The HTTPS edge: TLS versions, HTTP/2, redirect, HSTS, headers, limits, error pages."""

from __future__ import annotations

import json
import shlex
import textwrap

import pytest

from helpers import LB_GROUP, http, primary_address, run_site

# Runs on a tier host: one TLS handshake to the LB with a pinned protocol version.
HANDSHAKE = textwrap.dedent(
    """
    import json, socket, ssl, sys
    host, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Let the client itself allow old versions, so a failure is the server's refusal.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
            print(json.dumps({"ok": True, "version": tls.version(), "alpn": tls.selected_alpn_protocol(),
                              "cert": ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))}))
    except (ssl.SSLError, OSError) as err:
        print(json.dumps({"ok": False, "error": str(err)}))
    """
)


@pytest.fixture(scope="module")
def tls_lb(lb):
    if not lb.socket("tcp://0.0.0.0:443").is_listening:
        pytest.skip("TLS is not enabled on this load balancer")
    return lb


def handshake(host, version: str, target: str = "127.0.0.1") -> dict:
    return json.loads(host.check_output(f"python3 -c {shlex.quote(HANDSHAKE)} {target} 443 {version}"))


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_modern_tls_versions_succeed_with_http2(tls_lb, version):
    result = handshake(tls_lb, version)
    assert result["ok"], result
    assert result["version"] == version.replace("_", ".")
    assert result["alpn"] == "h2"


@pytest.mark.parametrize("version", ["TLSv1_1", "TLSv1"])
def test_old_tls_versions_are_refused(tls_lb, version):
    result = handshake(tls_lb, version)
    assert not result["ok"], result
    print(f"{version}: refused ({result['error']})")


def test_key_is_root_only_and_certificate_names_the_host(tls_lb):
    key = tls_lb.file("/etc/nginx/tls/lbi.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert tls_lb.file("/etc/nginx/tls").mode == 0o700
    decode = "import ssl; print(ssl._ssl._test_decode_cert('/etc/nginx/tls/lbi.crt'))"
    text = tls_lb.check_output(f'python3 -c "{decode}"')
    assert "127.0.0.1" in text


def test_http_redirects_to_https_but_health_stays_reachable(tls_lb):
    (answer,) = http(tls_lb, "http://127.0.0.1:80/some/page?x=1")
    assert answer["status"] == 301
    assert answer["headers"]["location"].startswith("https://127.0.0.1")
    assert answer["headers"]["location"].endswith("/some/page?x=1")
    (health,) = http(tls_lb, "http://127.0.0.1:80/health")
    assert health["status"] == 200


def test_hsts_and_security_headers_once_each(tls_lb, lb_url):
    (page,) = http(tls_lb, lb_url + "/")
    headers = page["headers"]
    assert headers["strict-transport-security"].startswith("max-age=")
    assert int(headers["strict-transport-security"].split("=")[1].split(";")[0]) > 0
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["server"] == "nginx"


# Announces a 2 MiB body and waits: NGINX must refuse it from the headers alone.
BIG_POST = textwrap.dedent(
    """
    import socket, ssl, sys
    port, tls = int(sys.argv[1]), sys.argv[2] == "tls"
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = ssl._create_unverified_context().wrap_socket(raw) if tls else raw
    conn.sendall(b"POST / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Length: 2097152\\r\\n\\r\\n" + b"x" * 1024)
    data = b""
    while b"</html>" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    print(data.decode("utf-8", "replace"))
    """
)


def test_oversized_body_is_refused_with_413(lb, lb_url):
    port, tls = ("443", "tls") if lb_url.startswith("https") else ("80", "plain")
    answer = lb.check_output(f"python3 -c {shlex.quote(BIG_POST)} {port} {tls}")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "Request too large" in answer
    assert "nginx" not in answer.split("\r\n\r\n", 1)[1].lower()


def test_no_backend_gives_a_clean_502_page(lb, lb_url, backends):
    for host in backends.values():
        host.run_expect([0], "systemctl stop lbapp.service")
    try:
        (answer,) = http(lb, lb_url + "/")
        assert answer["status"] == 502
        assert "Service unavailable" in answer["body"]
        for leak in ("nginx", "gunicorn", "python", "upstream"):
            assert leak not in answer["body"].lower()
        assert answer["headers"]["x-request-id"]
    finally:
        for host in backends.values():
            host.run_expect([0], "systemctl start lbapp.service")


def test_rate_limit_answers_429_after_the_burst_but_never_on_health(inventory, lb, lb_url, backends):
    result = run_site(inventory, {"lb_rate_limit_rate": 1, "lb_rate_limit_burst": 5}, LB_GROUP)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    try:
        # A client on the project network (not an exempt address).
        client = next(iter(backends.values()))
        url = lb_url.replace("127.0.0.1", primary_address(lb))
        statuses = [a["status"] for a in http(client, url + "/", count=15)]
        print("rate 1r/s burst 5, 15 quick requests:", statuses)
        assert statuses[:6] == [200] * 6
        assert 429 in statuses[6:]
        limited = next(a for a in http(client, url + "/", count=3) if a["status"] == 429)
        assert "Too many requests" in limited["body"]
        assert [a["status"] for a in http(client, url + "/health", count=15)] == [200] * 15
    finally:
        restored = run_site(inventory, {}, LB_GROUP)
        assert restored.returncode == 0, restored.stdout[-2000:]
