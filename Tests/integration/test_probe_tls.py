"""`sse-keepalive probe` over https (issue 13): a real nginx from Debian
terminates TLS with a certificate from a test CA the test generates with the
openssl CLI (for localhost, probe.test and 127.0.0.1), in front of a
scripted origin.

- with --cacert: verified, TLS version and ALPN h2 reported, healthy, exit 0;
- without it: "unknown issuer" in plain words, exit 1;
- --connect-to: the URL's host name (Host, SNI, certificate check) with
  another address;
- a host name the certificate does not name: "wrong host", exit 1; with
  --insecure the same probe runs (certificate not checked, and said so);
- https to a port that does not speak TLS: a clear error, exit 1.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from debian_packages import ensure_debian_package
from harness.probing import Nginx, codes, probe_json, run_probe, url_of
from harness.upstream import event_stream

pytestmark = pytest.mark.proxy_only


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def test_ca():
    """A CA and a server certificate it signed, in a temp dir."""
    if not shutil.which("openssl"):
        ensure_debian_package("openssl", "openssl")
    d = tempfile.mkdtemp(prefix="ssek-ca-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=sse-keepalive probe test CA",
             cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,DNS:probe.test,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_nginx(upstream, test_ca):
    binary = ensure_debian_package("nginx", "nginx", candidates=["/usr/sbin/nginx"])
    upstream.route("/events", lambda req: event_stream(
        [(0, b"retry: 3000\n\n"), (0.1, b"data: one\n\n"), (0.2, b"data: two\n\n")],
        headers=[("Cache-Control", "no-cache")], end="hang"))
    n = Nginx(binary, upstream.config_addr, ["proxy_buffering off"], listen_extra=" ssl http2",
              server_directives=[f"ssl_certificate {test_ca}/server.pem", f"ssl_certificate_key {test_ca}/server.key"])
    yield n
    n.stop()


def test_https_with_the_test_ca(tls_nginx, test_ca):
    rc, r = probe_json(url_of(("localhost", tls_nginx.port), "/events", "https"), "1s", "--cacert", f"{test_ca}/ca.pem")
    assert rc == 0, r["findings"]
    assert r["healthy"] and r["url"] == f"https://localhost:{tls_nginx.port}/events"
    tls = r["tls"]
    assert tls["version"] in ("TLSv1.3", "TLSv1.2") and tls["verified"] is True, tls
    assert tls["server_name"] == "localhost"
    assert tls["alpn"] == "h2" and tls["h2"] is True, tls
    assert "http1_only" not in codes(r)
    assert r["timeline"]["events"] == 2 and r["response"]["retry_ms"] == 3000


def test_https_text_report_shows_tls(tls_nginx, test_ca):
    p = run_probe(url_of(("127.0.0.1", tls_nginx.port), "/events", "https"), "--duration", "500ms", "--quiet",
                  "--cacert", f"{test_ca}/ca.pem")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "\nTLS\n" in p.stdout and "127.0.0.1 (certificate verified)" in p.stdout, p.stdout
    assert "ALPN               h2: browsers use HTTP/2" in p.stdout


def test_unknown_issuer_without_cacert(tls_nginx):
    rc, r = probe_json(url_of(("localhost", tls_nginx.port), "/events", "https"), "2s")
    assert rc == 1
    assert r["end"]["reason"] == "connect_failed" and r["response"] is None
    msg = r["findings"][0]["message"]
    assert "unknown issuer: the server's certificate is not signed by a CA in this machine's CA store" in msg, msg
    assert "--cacert FILE" in msg


def test_connect_to_keeps_the_url_host(tls_nginx, test_ca):
    rc, r = probe_json("https://probe.test/events", "800ms", "--cacert", f"{test_ca}/ca.pem",
                       "--connect-to", f"probe.test:443:127.0.0.1:{tls_nginx.port}")
    assert rc == 0, r["findings"]
    assert r["tls"]["server_name"] == "probe.test" and r["tls"]["verified"]
    assert r["timeline"]["events"] == 2


def test_wrong_host_name_is_a_clear_error(tls_nginx, test_ca):
    args = ["--connect-to", f"wrong.test:443:127.0.0.1:{tls_nginx.port}"]
    p = run_probe("https://wrong.test/events", "--duration", "2s", "--quiet", "--cacert", f"{test_ca}/ca.pem", *args)
    assert p.returncode == 1
    assert ("could not connect to https://wrong.test/events: TLS with wrong.test: wrong host: the server's certificate "
            "is not valid for wrong.test (it is for: localhost, probe.test)") in p.stdout, p.stdout
    # --insecure: the same path probes, and the report says nothing was checked.
    rc, r = probe_json("https://wrong.test/events", "800ms", "--insecure", *args)
    assert rc == 0, r["findings"]
    assert r["tls"]["verified"] is False and r["timeline"]["events"] == 2


def test_https_to_a_plain_http_port(upstream):
    upstream.route("/events", event_stream([(0, b"data: x\n\n")], end="hang"))
    rc, r = probe_json(url_of(upstream.addr, "/events", "https"), "2s", "--insecure")
    assert rc == 1 and r["end"]["reason"] == "connect_failed"
    # The scripted origin waits for an HTTP request and never answers the ClientHello.
    assert "TLS handshake timed out (is the server speaking TLS on this port?)" in r["findings"][0]["message"], r["findings"]
