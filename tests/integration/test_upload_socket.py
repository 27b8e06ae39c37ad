"""Uploads under gunicorn are read straight from the socket (``service.api.body``): exactly the body, so the same
keep-alive connection, and requests pipelined behind an upload, still work; a short body is refused, not hashed.
Runs against ``evidence serve`` (real gunicorn over a socket), the only server where that path is taken."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import BinaryIO

from tests.integration.test_serve import env, evidence, server  # noqa: F401 - pytest fixtures

Server = tuple[str, Path, subprocess.Popen[bytes]]


def tenant_key(server: Server, env: dict[str, str]) -> str:  # noqa: F811 - the fixture
    created = evidence("tenant", "create", "acme", "--data-dir", str(server[1]), env=env)
    assert created.returncode == 0, created.stderr
    return created.stdout.splitlines()[-1]


def upload_request(key: str, body: bytes, *, length: int | None = None, path: str = "/v1/evidence") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode("ascii") + body


def read_response(f: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_keep_alive_and_pipelined_requests_after_uploads(server: Server, env: dict[str, str]) -> None:  # noqa: F811
    key = tenant_key(server, env)
    big = os.urandom(5 * 1024 * 1024 + 123)  # past the 4 MiB where hashing overlaps reading
    small = b"a small file"
    with connect(server[0]) as sock, sock.makefile("rb") as f:
        # one after the other on one keep-alive connection
        for body in (big, small):
            sock.sendall(upload_request(key, body))
            status, headers, answer = read_response(f)
            assert status == 202, answer
            assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
            assert headers.get("connection", "").lower() != "close"
        # pipelined: an upload, another upload and a GET sent in one write, before any answer is read
        sock.sendall(
            upload_request(key, small + b"1")
            + upload_request(key, big[:70_000])
            + b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        for body in (small + b"1", big[:70_000]):
            status, _, answer = read_response(f)
            assert status == 202, answer
            assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
        status, _, answer = read_response(f)
        assert status == 200, answer
        # a chunked upload (no Content-Length) takes werkzeug's stream; the connection goes on after it
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (big[:40_000], big[40_000:100_000])) + b"0\r\n\r\n"
        sock.sendall(
            f"POST /v1/evidence HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + chunked
            + upload_request(key, small + b"2")
        )
        for body in (big[:100_000], small + b"2"):
            status, _, answer = read_response(f)
            assert status == 202, answer
            assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
        # an empty upload is refused, and the connection still serves the next request
        sock.sendall(upload_request(key, b"") + upload_request(key, small))
        status, _, answer = read_response(f)
        assert status == 400 and "the upload was empty" in json.loads(answer)["detail"], answer
        status, _, answer = read_response(f)
        assert status == 202 and json.loads(answer)["sha256"] == hashlib.sha256(small).hexdigest(), answer


def test_a_body_shorter_than_its_content_length_is_not_deposited(server: Server, env: dict[str, str]) -> None:  # noqa: F811
    key = tenant_key(server, env)
    part = os.urandom(6 * 1024 * 1024)
    with connect(server[0]) as sock, sock.makefile("rb") as f:
        sock.sendall(upload_request(key, part, length=len(part) + 1000))
        sock.shutdown(socket.SHUT_WR)  # the client stops 1000 bytes short
        status_line = f.readline()
    assert not status_line.startswith(b"HTTP/1.1 202"), status_line
    # nothing was deposited for the truncated body
    listed = evidence("tenant", "list", "--data-dir", str(server[1]), env=env)
    assert listed.returncode == 0, listed.stderr
    with connect(server[0]) as sock, sock.makefile("rb") as f:
        sock.sendall(
            f"GET /v1/evidence?sha256={hashlib.sha256(part).hexdigest()} HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {key}\r\n\r\n".encode()
        )
        status, _, answer = read_response(f)
    assert status == 200, answer
    assert json.loads(answer)["items"] == [], answer
