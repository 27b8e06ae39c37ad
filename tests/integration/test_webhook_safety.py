"""Webhooks cannot be used for server-side request forgery, and one slow endpoint cannot hold up other tenants.

Every address form of issue 11 is registered (numeric forms through the API, which refuses them, and again
directly in the database, as a webhook stored before the check existed would be) and delivered against a real
listener on 127.0.0.1 that must receive nothing unless the operator allow-listed the network. Names are given
their answers by a resolver table; every connection the delivery opens is redirected to the same listener, so
a missing check would show up there (and no packet ever leaves this machine). SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from service import outbound, sealing, webhooks
from service.api import create_app
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant

FAST = (0, 0.2)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@dataclass
class Listener:
    """A real TCP server on 127.0.0.1 answering every request ``200``; counts connections and requests."""

    sock: socket.socket
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    banner: bytes | None = None  # sent instead of an HTTP answer (e.g. an SSH banner)
    trickle: float | None = None  # seconds between bytes of a never-ending answer (a tarpit)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head)
                if self.banner is not None:
                    conn.sendall(self.banner)
                elif self.trickle is not None:
                    for byte in b"HTTP/1.1 200 OK\r\n" * 20:
                        if self.stop.wait(self.trickle):
                            return
                        conn.sendall(bytes([byte]))
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                return


@pytest.fixture
def listener() -> Iterator[Listener]:
    yield from _listener()


@pytest.fixture
def listener2() -> Iterator[Listener]:
    yield from _listener()


def _listener() -> Iterator[Listener]:
    sock = socket.create_server(("127.0.0.1", 0))
    lst = Listener(sock)
    thread = threading.Thread(target=lst.serve, daemon=True)
    thread.start()
    yield lst
    lst.stop.set()
    # shutdown wakes the blocked accept(); a bare close() would leave it waiting on an fd number the next
    # test's socket may reuse
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    thread.join(5)
    sock.close()


def make_runtime(tmp_path: Path, db_url: str, allow: Sequence[Any] = ()) -> Runtime:
    rt = Runtime.from_settings(
        Settings(
            data_dir=tmp_path / "data",
            database_url=db_url,
            rate_limit=0,
            public_url="https://evidence.example",
            webhook_allow_networks=tuple(allow),
        )
    )
    rt.prepare_signing()
    return rt


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    db.upgrade(db_url)
    rt = make_runtime(tmp_path, db_url)
    yield rt
    rt.engine.dispose()


def client_for(rt: Runtime) -> FlaskClient:
    return create_app(runtime=rt, start_sealer=False).test_client()


def new_tenant(rt: Runtime, name: str) -> tuple[int, dict[str, str]]:
    with rt.engine.begin() as conn:
        key = create_tenant(conn, name, utc_now())
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE name = :n"), {"n": name}).scalar_one()
    return int(tenant_id), {"Authorization": f"Bearer {key}"}


def deposit(client: FlaskClient, headers: dict[str, str], salt: str) -> None:
    r = client.post(
        "/v1/evidence/batch", json={"items": [{"sha256": hashlib.sha256(salt.encode()).hexdigest()}]}, headers=headers
    )
    assert r.status_code == 202, r.get_data(as_text=True)


def seal(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        result = sealing.seal_batch(conn, rt.signer, utc_now(), rt.settings.batch_max_size)
        assert result is not None
        webhooks.enqueue_seal_events(conn, result.seq)


def store_webhook(rt: Runtime, tenant_id: int, url: str) -> None:
    """Store a webhook without the registration check (as one registered before the check existed)."""
    with rt.engine.begin() as conn:
        ledger.insert_webhook(conn, tenant_id, url, "whsec_test", 0)


def errors_of(rt: Runtime) -> dict[str, list[str | None]]:
    with rt.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT w.url, d.error FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
                "WHERE d.attempt > 0 ORDER BY d.id"
            )
        ).all()
    out: dict[str, list[str | None]] = {}
    for url, error in rows:
        out.setdefault(url, []).append(error)
    return out


# Hosts written in the URL. Numeric ones are read by the system resolver; names get the answer in NAMES.
NUMERIC_HOSTS = [
    "127.0.0.1",
    "127.0.0.2",
    "2130706433",  # 127.0.0.1 as one decimal number
    "0x7f000001",  # ... as hex
    "0177.0.0.1",  # ... octal
    "127.1",  # ... short form
    "0.0.0.0",  # unspecified: reaches the local host on Linux
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:169.254.169.254]",
    "[::]",
    "169.254.169.254",  # cloud metadata (link-local)
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "100.64.0.1",  # CGNAT
    "[fd00::1]",  # unique-local
    "[fc00::1]",
    "[fe80::1]",  # link-local
    "224.0.0.1",  # multicast
    "[ff02::1]",
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[2002:a00:1::1]",  # 6to4 of 10.0.0.1
    "240.0.0.1",  # reserved
    "255.255.255.255",
]
NAMES = {
    "localhost": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "intranet.test": ["10.1.2.3"],
    "printer.test": ["192.168.1.20"],
    "router.test": ["172.20.0.1"],
    "cgnat.test": ["100.100.100.100"],
    "ula.test": ["fd12:3456::1"],
    "mixed.test": ["93.184.216.34", "10.0.0.1"],  # one public, one private answer: refused as a whole
}


def table_resolver(host: str, port: int) -> list[str]:
    return NAMES[host] if host in NAMES else outbound.system_resolve(host, port)


def redirect_to(lst: Listener, seen: list[tuple[str, int]]) -> outbound.Connector:
    """A connector that records the address asked for and connects to the listener instead."""

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        seen.append(address)
        return socket.create_connection(("127.0.0.1", lst.port), timeout=timeout)

    return connect


def test_registration_refuses_numeric_non_public_hosts(runtime: Runtime, listener: Listener) -> None:
    client = client_for(runtime)
    _, acme = new_tenant(runtime, "acme")
    for host in NUMERIC_HOSTS:
        r = client.put("/v1/webhook", json={"url": f"http://{host}:{listener.port}/hook"}, headers=acme)
        assert r.status_code == 400, host
        assert "public address" in r.get_json()["detail"], host
    for ok in ["https://93.184.216.34/hook", "https://hooks.example/x", "http://metadata.google.internal/"]:
        assert client.put("/v1/webhook", json={"url": ok}, headers=acme).status_code == 201, ok  # names: at delivery
    assert listener.connections == 0


def test_delivery_refuses_every_non_public_address_and_sends_nothing(runtime: Runtime, listener: Listener) -> None:
    client = client_for(runtime)
    urls = [f"http://{h}:{listener.port}/hook" for h in NUMERIC_HOSTS] + [
        f"http://{name}:{listener.port}/hook" for name in NAMES
    ]
    for n, url in enumerate(urls):
        tenant_id, headers = new_tenant(runtime, f"t{n}")
        store_webhook(runtime, tenant_id, url)
        deposit(client, headers, url)
    seal(runtime)
    asked: list[tuple[str, int]] = []
    transport = webhooks.Transport(timeout=3, resolver=table_resolver, connector=redirect_to(listener, asked))
    assert webhooks.dispatch_due(runtime.engine, runtime.settings, delays=FAST, transport=transport) == 0
    assert listener.connections == 0 and asked == []
    errors = errors_of(runtime)
    assert sorted(errors) == sorted(urls)
    assert all(e == ["address not allowed"] for e in errors.values()), errors


def test_allow_listed_network_is_reached(tmp_path: Path, db_url: str, listener: Listener) -> None:
    db.upgrade(db_url)
    rt = make_runtime(tmp_path, db_url, LOOPBACK)
    try:
        client = client_for(rt)
        urls = [f"http://{h}:{listener.port}/hook" for h in ("127.0.0.1", "2130706433", "localhost")]
        for n, url in enumerate(urls):
            _, headers = new_tenant(rt, f"t{n}")
            assert client.put("/v1/webhook", json={"url": url}, headers=headers).status_code == 201
            deposit(client, headers, url)
        _, other = new_tenant(rt, "private")  # outside the allowed network: still refused
        assert client.put("/v1/webhook", json={"url": "http://10.0.0.1/"}, headers=other).status_code == 400
        seal(rt)
        assert webhooks.dispatch_due(rt.engine, rt.settings, delays=FAST) == 3  # the real resolver and connect
        assert listener.connections == 3
        assert {head.split(b"\r\n")[0] for head in listener.requests} == {b"POST /hook HTTP/1.1"}
    finally:
        rt.engine.dispose()


def test_connection_goes_to_the_checked_address_no_second_lookup(runtime: Runtime, listener: Listener) -> None:
    """DNS rebinding: the name answers a public address, then a private one; the connection uses the first."""
    client = client_for(runtime)
    tenant_id, headers = new_tenant(runtime, "acme")
    store_webhook(runtime, tenant_id, f"http://rebind.test:{listener.port}/hook")
    answers = [["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]]
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return answers[len(lookups) - 1]

    asked: list[tuple[str, int]] = []
    transport = webhooks.Transport(timeout=3, resolver=rebinding, connector=redirect_to(listener, asked))
    deposit(client, headers, "one")
    seal(runtime)
    assert webhooks.dispatch_due(runtime.engine, runtime.settings, delays=FAST, transport=transport) == 1
    assert lookups == ["rebind.test"] and asked == [("93.184.216.34", listener.port)]
    assert b"Host: rebind.test:%d" % listener.port in listener.requests[0]
    deposit(client, headers, "two")
    seal(runtime)
    assert webhooks.dispatch_due(runtime.engine, runtime.settings, delays=FAST, transport=transport) == 0
    assert asked == [("93.184.216.34", listener.port)] and listener.connections == 1  # the private answer: refused


def test_tenants_see_only_short_error_categories(tmp_path: Path, db_url: str, listener: Listener) -> None:
    db.upgrade(db_url)
    rt = make_runtime(tmp_path, db_url, LOOPBACK)
    try:
        client = client_for(rt)
        listener.banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
        closed = socket.create_server(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()  # nothing listens there now
        cases = {
            "refused": (f"http://127.0.0.1:{closed_port}/", "connection refused"),
            "banner": (f"http://127.0.0.1:{listener.port}/", "invalid HTTP response"),
            "nodns": ("http://no-such-host.invalid/", "DNS lookup failed"),
        }
        headers_of = {}
        for name, (url, _) in cases.items():
            _, headers_of[name] = new_tenant(rt, name)
            client.put("/v1/webhook", json={"url": url}, headers=headers_of[name])
            deposit(client, headers_of[name], name)
        seal(rt)
        webhooks.dispatch_due(rt.engine, rt.settings, delays=FAST)
        for name, (_, category) in cases.items():
            log = client.get("/v1/webhook", headers=headers_of[name]).get_json()["deliveries"]
            assert log[0]["error"] == category, (name, log)
        assert listener.connections == 1
    finally:
        rt.engine.dispose()


def _tls_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def test_https_uses_sni_and_verifies_the_certificate_for_the_name(tmp_path: Path) -> None:
    key, cert = _tls_cert(tmp_path, "hooks.test")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment,func-returns-value]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    heads: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            try:
                raw, _ = server.accept()
            except OSError:
                return
            try:
                with server_ctx.wrap_socket(raw, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += tls.recv(65536)
                    while not data.endswith(b"{}"):  # the body too: closing with unread data would reset
                        data += tls.recv(65536)
                    heads.append(data)
                    tls.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            except (OSError, ssl.SSLError):
                pass  # the second connection fails its handshake (certificate refused by the client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    resolve = {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    try:
        response = outbound.post(
            f"https://hooks.test:{port}/in", b"{}", {"Content-Type": "application/json"}, timeout=5,
            allow=LOOPBACK, resolver=lambda h, p: resolve[h], ssl_context=client_ctx,
        )  # fmt: skip
        assert response.status == 204 and response.address == "127.0.0.1"
        assert sni == ["hooks.test"] and b"Host: hooks.test:%d" % port in heads[0]
        with pytest.raises(outbound.OutboundError) as info:  # the certificate is not for this name
            outbound.post(
                f"https://other.test:{port}/in", b"{}", {}, timeout=5,
                allow=LOOPBACK, resolver=lambda h, p: resolve[h], ssl_context=client_ctx,
            )  # fmt: skip
        assert info.value.category == "TLS certificate not valid"
    finally:
        try:
            server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        thread.join(5)
        server.close()


def test_total_deadline_per_attempt_against_a_trickling_endpoint(listener: Listener) -> None:
    listener.trickle = 0.3  # one byte every 0.3 s: each read succeeds, the answer never ends
    started = time.monotonic()
    with pytest.raises(outbound.OutboundError) as info:
        outbound.post(f"http://127.0.0.1:{listener.port}/", b"{}", {}, timeout=1.5, allow=LOOPBACK)
    elapsed = time.monotonic() - started
    assert info.value.category == "timeout"
    assert 1.4 < elapsed < 3.0, elapsed


def test_a_tarpit_endpoint_does_not_delay_another_tenants_delivery(
    tmp_path: Path, db_url: str, listener: Listener, listener2: Listener
) -> None:
    """Tenant A's receiver sends one byte every 2 s; tenant B's delivery, sealed after A's began, arrives within
    2 s (the embedded dispatcher with its defaults)."""
    db.upgrade(db_url)
    rt = make_runtime(tmp_path, db_url, LOOPBACK)
    client = client_for(rt)
    listener.trickle = 2.0
    _, a = new_tenant(rt, "slow")
    _, b = new_tenant(rt, "fast")
    client.put("/v1/webhook", json={"url": f"http://127.0.0.1:{listener.port}/a"}, headers=a)
    client.put("/v1/webhook", json={"url": f"http://127.0.0.1:{listener2.port}/b"}, headers=b)
    dispatcher = webhooks.WebhookDispatcher(rt.engine, rt.settings)
    dispatcher.start()
    try:
        for n in range(3):  # three events for A: more than its share of the pool
            deposit(client, a, f"a{n}")
            seal(rt)
        deadline = time.monotonic() + 10
        while not listener.requests:
            assert time.monotonic() < deadline, "the tarpit never got its request"
            time.sleep(0.02)
        time.sleep(0.5)
        deposit(client, b, "b")
        seal(rt)
        sealed_at = time.monotonic()
        while not listener2.requests:
            assert time.monotonic() - sealed_at < 2.0, "tenant B's delivery waited behind tenant A's endpoint"
            time.sleep(0.02)
    finally:
        listener.stop.set()  # the tarpit ends its answers; the dispatcher's attempts end
        dispatcher.stop()
        rt.engine.dispose()
