"""Guarded result downloads, against tiny HTTP servers on 127.0.0.1.

Nothing here may leave the machine: names resolve from a fixed table, and any connection to
an address other than loopback fails the test instead of being made.
"""

import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import pytest

from imagereview.providers.downloads import (
    DownloadFailed,
    UnsafeURL,
    check_url,
    fetch_to,
    tls_context,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Server:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Server = self.server.app  # type: ignore[attr-defined]
        server.hosts.append(self.headers["Host"])
        route = server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        route(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


def send(
    body: bytes, *, status: int = 200, headers: dict[str, str] | None = None, length: bool = True
) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def redirect(location: str) -> Route:
    return send(b"", status=302, headers={"Location": location})


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Names that resolve, with their address; numeric hosts resolve as themselves."""
    table: dict[str, str] = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list:
        name = host.rstrip(".")
        if name in table:
            host = table[name]
        kwargs["flags"] = socket.AI_NUMERICHOST
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch, resolver: dict[str, str]) -> list[str]:
    """Hosts connected to; connecting anywhere but loopback fails the test."""
    made: list[str] = []
    real_create_connection = socket.create_connection

    def create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        host = address[0]
        assert ipaddress.ip_address(host).is_loopback, f"tried to connect to {host}"
        made.append(host)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return made


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls else "http"
    app = Server(base=f"{scheme}://127.0.0.1:{httpd.server_port}")
    httpd.app = app  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield app
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def http_server() -> Iterator[Server]:
    with serving() as server:
        yield server


@pytest.fixture
def server(http_server: Server) -> Server:
    http_server.routes.clear()
    http_server.hosts.clear()
    return http_server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for results.test, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-days", "1", "-subj", "/CN=results.test"]
        + ["-addext", "subjectAltName=DNS:results.test"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An https server on 127.0.0.1 for results.test, trusted as if a public CA signed it."""
    cert, key = certificate
    monkeypatch.setattr(certifi, "where", lambda: str(cert))
    # The client's TLS context is made once per process: make it again with this CA.
    tls_context.cache_clear()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serving(context) as server:
        yield server
    tls_context.cache_clear()


def fetch(url: str, **overrides: object) -> bytes:
    options = {
        "allowed_hosts": ["127.0.0.1"],
        "allow_loopback": True,
        "max_bytes": 10_000,
        "timeout": 2.0,
    } | overrides
    sink = io.BytesIO()
    fetch_to(url, sink, **options)  # type: ignore[arg-type]
    return sink.getvalue()


def test_fetch_streams_an_image_from_an_allowed_loopback_server(server: Server) -> None:
    server.routes["/out.png"] = send(PNG_BYTES, headers={"Content-Type": "image/png"})
    sink = io.BytesIO()

    content_type = fetch_to(
        f"{server.base}/out.png",
        sink,
        allowed_hosts=["127.0.0.1"],
        allow_loopback=True,
        max_bytes=10_000,
        timeout=2.0,
    )

    assert content_type == "image/png"
    assert sink.getvalue() == PNG_BYTES


def test_fetch_follows_a_relative_redirect(server: Server) -> None:
    server.routes["/old"] = redirect("/new.png")
    server.routes["/new.png"] = send(PNG_BYTES)

    assert fetch(f"{server.base}/old") == PNG_BYTES


def test_fetch_refuses_more_than_three_redirects(server: Server) -> None:
    for hop in range(4):
        server.routes[f"/{hop}"] = redirect(f"/{hop + 1}")
    server.routes["/4"] = send(PNG_BYTES)

    with pytest.raises(DownloadFailed, match="more than 3 redirects"):
        fetch(f"{server.base}/0")


@pytest.mark.parametrize(
    ("url", "allow_loopback"),
    [
        ("http://127.0.0.1/out.png", False),
        ("http://[::1]/", False),
        ("http://[::ffff:127.0.0.1]/", False),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://10.0.0.1/x", True),
        ("http://192.168.1.1/x", True),
        ("http://[::ffff:10.0.0.1]/x", True),
        ("http://[fe80::1]/x", True),
        ("http://[fc00::1]/x", True),
        ("http://100.64.0.1/x", True),
        ("http://224.0.0.1/x", True),
        ("http://0.0.0.0/", True),
        ("http://[::]/", True),
        ("http://2130706433/", False),
    ],
)
def test_check_url_refuses_a_non_public_address(url: str, allow_loopback: bool) -> None:
    with pytest.raises(UnsafeURL, match="non-public address"):
        check_url(url, allowed_hosts=["*"], allow_loopback=allow_loopback)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/", "http:///x", "x"],
)
def test_check_url_refuses_what_is_not_http(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, allowed_hosts=["*"], allow_loopback=True)


def test_check_url_refuses_a_host_not_allowed_before_resolving_it(
    resolver: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", pytest.fail)

    with pytest.raises(UnsafeURL, match="not in the allowed result hosts"):
        check_url("https://evil.example/x.png", allowed_hosts=["cdn.example"], allow_loopback=False)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("cdn.example.com", True),
        ("a.b.example.com", True),
        ("example.com", True),
        ("EXAMPLE.com.", True),
        ("badexample.com", False),
        ("example.com.evil.net", False),
    ],
)
def test_check_url_matches_domain_entries(
    resolver: dict[str, str], host: str, allowed: bool
) -> None:
    resolver[host.lower().rstrip(".")] = "203.0.114.7"
    if allowed:
        check_url(f"https://{host}/x", allowed_hosts=[".example.com"], allow_loopback=False)
    else:
        with pytest.raises(UnsafeURL, match="not in the allowed"):
            check_url(f"https://{host}/x", allowed_hosts=[".example.com"], allow_loopback=False)


def test_fetch_refuses_a_loopback_server_unless_loopback_is_allowed(
    server: Server, connections: list[str]
) -> None:
    server.routes["/out.png"] = send(PNG_BYTES)

    with pytest.raises(UnsafeURL):
        fetch(f"{server.base}/out.png", allow_loopback=False)

    assert connections == []


def test_fetch_refuses_a_name_that_resolves_to_a_private_address(
    resolver: dict[str, str], connections: list[str]
) -> None:
    resolver["results.example"] = "10.0.0.1"

    with pytest.raises(UnsafeURL, match="non-public address 10.0.0.1"):
        fetch("http://results.example/out.png", allowed_hosts=["results.example"])

    assert connections == []


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "//10.0.0.1/x",
        "http://internal.example/",
    ],
)
def test_fetch_refuses_a_redirect_to_a_private_address(
    server: Server, resolver: dict[str, str], connections: list[str], location: str
) -> None:
    resolver["internal.example"] = "172.16.0.5"
    server.routes["/out.png"] = redirect(location)

    with pytest.raises(UnsafeURL, match="non-public address"):
        fetch(f"{server.base}/out.png", allowed_hosts=["*"])

    assert connections == ["127.0.0.1"]


def test_fetch_refuses_a_redirect_to_a_file_url(server: Server, connections: list[str]) -> None:
    server.routes["/out.png"] = redirect("file:///etc/passwd")

    with pytest.raises(UnsafeURL, match="not an http"):
        fetch(f"{server.base}/out.png", allowed_hosts=["*"])

    assert connections == ["127.0.0.1"]


def test_fetch_refuses_a_redirect_to_a_host_not_allowed(
    server: Server, resolver: dict[str, str]
) -> None:
    resolver["elsewhere.example"] = "203.0.114.7"
    server.routes["/out.png"] = redirect("https://elsewhere.example/out.png")

    with pytest.raises(UnsafeURL, match="not in the allowed"):
        fetch(f"{server.base}/out.png")


def test_fetch_connects_to_the_address_it_checked(
    server: Server,
    resolver: dict[str, str],
    connections: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that resolves to loopback once and to a private address after (DNS rebinding)."""
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1"])
    lookups: list[str] = []
    getaddrinfo = socket.getaddrinfo

    def rebinding(host: str, *args: object, **kwargs: object) -> list:
        if host == "results.example":
            lookups.append(host)
            resolver[host] = next(answers)
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    server.routes["/out.png"] = send(PNG_BYTES)
    port = server.base.rsplit(":", 1)[1]

    body = fetch(f"http://results.example:{port}/out.png", allowed_hosts=["results.example"])

    assert body == PNG_BYTES
    assert lookups == ["results.example"]
    assert connections == ["127.0.0.1"]
    assert server.hosts == [f"results.example:{port}"]


def test_fetch_over_https_keeps_the_name_for_sni_and_verification(
    tls_server: Server, resolver: dict[str, str], connections: list[str]
) -> None:
    resolver["results.test"] = resolver["other.test"] = "127.0.0.1"
    tls_server.routes["/out.png"] = send(PNG_BYTES)
    port = tls_server.base.rsplit(":", 1)[1]
    allowed = ["results.test", "other.test"]

    body = fetch(f"https://results.test:{port}/out.png", allowed_hosts=allowed)

    assert body == PNG_BYTES
    assert connections == ["127.0.0.1"]
    assert tls_server.hosts == [f"results.test:{port}"]
    with pytest.raises(DownloadFailed, match="not valid for 'other.test'"):
        fetch(f"https://other.test:{port}/out.png", allowed_hosts=allowed)


def test_fetch_refuses_a_declared_length_over_the_cap(server: Server) -> None:
    server.routes["/big.png"] = send(PNG_BYTES)
    sink = io.BytesIO()

    with pytest.raises(DownloadFailed, match="2008 bytes, over 1000"):
        fetch_to(
            f"{server.base}/big.png",
            sink,
            allowed_hosts=["127.0.0.1"],
            allow_loopback=True,
            max_bytes=1000,
            timeout=2.0,
        )

    assert sink.getvalue() == b""


def test_fetch_refuses_a_streamed_body_over_the_cap(server: Server) -> None:
    server.routes["/big.png"] = send(b"x" * 200_000, length=False)

    with pytest.raises(DownloadFailed, match="over 100000 bytes"):
        fetch(f"{server.base}/big.png", max_bytes=100_000)


def test_fetch_accepts_a_body_exactly_at_the_cap(server: Server) -> None:
    server.routes["/out.png"] = send(PNG_BYTES, length=False)

    assert fetch(f"{server.base}/out.png", max_bytes=len(PNG_BYTES)) == PNG_BYTES


@pytest.mark.parametrize("status", [403, 404, 410])
def test_fetch_reports_a_dead_link_as_gone(server: Server, status: int) -> None:
    server.routes["/expired.png"] = send(b"no", status=status)

    with pytest.raises(DownloadFailed) as caught:
        fetch(f"{server.base}/expired.png")

    assert caught.value.status == status
    assert caught.value.gone


def test_fetch_reports_a_server_error_as_not_gone(server: Server) -> None:
    server.routes["/out.png"] = send(b"oops", status=503)

    with pytest.raises(DownloadFailed) as caught:
        fetch(f"{server.base}/out.png")

    assert caught.value.status == 503
    assert not caught.value.gone


def test_fetch_times_out_on_a_slow_server(server: Server) -> None:
    release = threading.Event()

    def stall(handler: BaseHTTPRequestHandler) -> None:
        release.wait(2)

    server.routes["/slow.png"] = stall
    started = time.monotonic()
    try:
        with pytest.raises(DownloadFailed, match="timed out"):
            fetch(f"{server.base}/slow.png", timeout=0.2)
    finally:
        release.set()

    assert time.monotonic() - started < 1


def test_fetch_times_out_on_a_body_that_trickles(server: Server) -> None:
    """Each read is quick, but the whole body takes longer than the timeout."""

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        try:
            for _ in range(30):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.02)
        except ConnectionError:
            pass

    server.routes["/trickle.png"] = trickle

    with pytest.raises(DownloadFailed, match="timed out"):
        fetch(f"{server.base}/trickle.png", timeout=0.2)
