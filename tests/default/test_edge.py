"""The HTTPS edge: TLS versions, HTTP/2, redirect, HSTS, headers, limits, error pages."""

from __future__ import annotations

import collections
import json
import shlex
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from helpers import LB_GROUP, hosts_not_clean, http, primary_address, python, recap, run_playbook, run_site

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
        print(json.dumps({"ok": False, "error": str(err), "reason": getattr(err, "reason", None)}))
    """
)

# Runs on the same host: the control for the refusal tests. A throwaway `openssl s_server`
# that speaks only the given old version, and HANDSHAKE (argv[3]) against it: its success
# shows the host's OpenSSL and the client settings can do that version.
OLD_TLS_CONTROL = textwrap.dedent(
    """
    import socket, subprocess, sys, tempfile, time
    flag, version, handshake = sys.argv[1], sys.argv[2], sys.argv[3]
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = f"{tmp}/key.pem", f"{tmp}/cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=lbi-tls-control",
                        "-days", "1", "-keyout", key, "-out", cert], check=True, capture_output=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", flag,
                                   "-cipher", "DEFAULT:@SECLEVEL=0", "-cert", cert, "-key", key],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            result = subprocess.run([sys.executable, "-c", handshake, "127.0.0.1", str(port), version],
                                    capture_output=True, text=True, check=True)
            print(result.stdout)
        finally:
            server.kill()
    """
)

# Runs on the load balancer: one GET over TLS, printed as the raw lines of the answer's head
# (status line and every header line as sent, repeated ones included).
RAW_HEAD = textwrap.dedent(
    """
    import json, socket, ssl, sys
    port, path = int(sys.argv[1]), sys.argv[2]
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = ssl._create_unverified_context().wrap_socket(raw)
    conn.sendall(f"GET {path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n".encode())
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    print(json.dumps(data.split(b"\\r\\n\\r\\n", 1)[0].decode("latin-1").split("\\r\\n")))
    """
)


@pytest.fixture(scope="module")
def tls_lb(lb, lb_name, role_var):
    if not role_var(lb_name, "lb_tls_enabled"):
        pytest.skip("TLS is not enabled on this load balancer (lb_tls_enabled)")
    return lb


@pytest.fixture(scope="module")
def tls_port(lb_name, role_var) -> int:
    return int(role_var(lb_name, "lb_tls_port"))


def handshake(host, version: str, port: int, target: str = "127.0.0.1") -> dict:
    return json.loads(host.check_output(f"python3 -c {shlex.quote(HANDSHAKE)} {target} {port} {version}"))


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_modern_tls_versions_succeed_with_http2(tls_lb, tls_port, version):
    result = handshake(tls_lb, version, tls_port)
    assert result["ok"], result
    assert result["version"] == version.replace("_", ".")
    assert result["alpn"] == "h2"


@pytest.mark.parametrize("version,openssl_flag", [("TLSv1_1", "-tls1_1"), ("TLSv1", "-tls1")])
def test_old_tls_versions_are_refused_by_the_lb_not_by_the_client(tls_lb, tls_port, version, openssl_flag):
    if not tls_lb.exists("openssl"):
        pytest.skip("no openssl command on the load balancer for the control handshake")
    control = json.loads(python(tls_lb, OLD_TLS_CONTROL, openssl_flag, version, HANDSHAKE))
    assert control["ok"] and control["version"] == version.replace("_", "."), f"the client cannot: {control}"
    result = handshake(tls_lb, version, tls_port)
    print(f"{version}: a local openssl s_server {openssl_flag} accepts it; the LB: {result}")
    assert not result["ok"], result
    # The server's protocol_version alert: the LB, not the client, said no.
    assert result["reason"] == "TLSV1_ALERT_PROTOCOL_VERSION", result


# Writes a PEM certificate (argv[1]) to a file and prints what Python's ssl decodes of it.
DECODE_CERT = textwrap.dedent(
    """
    import json, ssl, sys, tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(sys.argv[1])
        pem.flush()
        print(json.dumps(ssl._ssl._test_decode_cert(pem.name)))
    """
)


def test_key_is_root_only_and_the_served_certificate_names_the_host(tls_lb, tls_port):
    key = tls_lb.file("/etc/nginx/tls/lbi.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert tls_lb.file("/etc/nginx/tls").mode == 0o700
    served = handshake(tls_lb, "TLSv1_2", tls_port)
    assert served["ok"], served
    names = json.loads(python(tls_lb, DECODE_CERT, served["cert"]))["subjectAltName"]
    assert ["IP Address", "127.0.0.1"] in names, names


def served_names(host, port: int) -> list:
    served = handshake(host, "TLSv1_2", port)
    assert served["ok"], served
    return json.loads(python(host, DECODE_CERT, served["cert"]))["subjectAltName"]


def converge_lbs(inventory, extra: dict) -> str:
    result = run_playbook(inventory, "site.yml", extra, ("--limit", LB_GROUP, "--tags", "lb"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.mark.destructive
def test_a_given_certificate_is_served_and_the_generated_one_comes_back(inventory, tls_lb, tls_port):
    """The given pair goes live through the staged path (0600 key, no change on a second run);
    without it the role generates its own again."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=given.example", "-addext", "subjectAltName=DNS:given.example", "-days", "2",
             "-keyout", f"{tmp}/k", "-out", f"{tmp}/c"],
            check=True, capture_output=True,
        )  # fmt: skip
        given = {"lb_tls_certificate": Path(tmp, "c").read_text(), "lb_tls_private_key": Path(tmp, "k").read_text()}
    try:
        converge_lbs(inventory, given)
        assert ["DNS", "given.example"] in served_names(tls_lb, tls_port)
        key = tls_lb.file("/etc/nginx/tls/lbi.key")
        assert (key.user, key.mode) == ("root", 0o600)
        again = converge_lbs(inventory, given)
        assert hosts_not_clean(again) == [], recap(again)
    finally:
        converge_lbs(inventory, {})
    names = served_names(tls_lb, tls_port)
    assert ["IP Address", "127.0.0.1"] in names and ["DNS", "given.example"] not in names, names


def test_http_redirects_to_https_but_health_stays_reachable(tls_lb, lb_http_url):
    (answer,) = http(tls_lb, f"{lb_http_url}/some/page?x=1")
    assert answer["status"] == 301
    assert answer["headers"]["location"].startswith("https://127.0.0.1")
    assert answer["headers"]["location"].endswith("/some/page?x=1")
    (health,) = http(tls_lb, f"{lb_http_url}/health")
    assert health["status"] == 200


@pytest.mark.parametrize("path", ["/", "/no-such-page"])
def test_hsts_and_security_headers_once_each(tls_lb, tls_port, lb_name, role_var, path):
    """The app sets some of these headers too: NGINX must send its own, once (HSTS as the
    inventory says: none with lb_hsts_max_age 0)."""
    max_age = int(role_var(lb_name, "lb_hsts_max_age"))
    status, *lines = json.loads(python(tls_lb, RAW_HEAD, tls_port, path))
    assert status.split()[1] in ("200", "404"), status
    fields = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    count = collections.Counter(name for name, _ in fields)
    value = dict(fields)
    for name in ("x-content-type-options", "x-frame-options", "referrer-policy", "server", "x-request-id"):
        assert count[name] == 1, (name, lines)
    assert count["strict-transport-security"] == (1 if max_age else 0), lines
    if max_age:
        assert value["strict-transport-security"].split(";")[0] == f"max-age={max_age}"
    assert value["x-content-type-options"] == "nosniff"
    assert value["x-frame-options"] == "DENY"
    assert value["referrer-policy"] == "no-referrer"
    assert value["server"] == "nginx"


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
    port, tls = lb_url.rsplit(":", 1)[1], ("tls" if lb_url.startswith("https") else "plain")
    answer = lb.check_output(f"python3 -c {shlex.quote(BIG_POST)} {port} {tls}")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "Request too large" in answer
    assert "nginx" not in answer.split("\r\n\r\n", 1)[1].lower()


@pytest.mark.destructive
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


@pytest.mark.destructive
def test_rate_limit_answers_429_after_the_burst_but_never_on_health(inventory, lb, lb_url, backends):
    result = run_site(inventory, {"lb_rate_limit_rate": 1, "lb_rate_limit_burst": 5}, LB_GROUP, tags="lb")
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
        restored = run_site(inventory, {}, LB_GROUP, tags="lb")
        assert restored.returncode == 0, restored.stdout[-2000:]
