"""service.tsa_client against a real local TSA over HTTP (tests.support.local_tsa.LocalTSA).

End to end: request_token -> verify_token, cross-checked by ``openssl ts -verify``; and the failures a
worker must survive (503s, an outage, a closed port, a silent server), each as a TimestampError.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from service.core.errors import TimestampError
from service.core.timestamps import load_ca_certificates, token_info, verify_token
from service.tsa_client import request_token
from tests.support.local_tsa import LocalTSA, openssl_verify

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl binary is not installed")

ENTRY = (
    b"evidence-ledger batch v1\nseq 3\nsize 2\nroot AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    b"sealed 2026-11-28T16:13:35.123456Z\n"
)


@pytest.fixture
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA(name="Integration TSA") as authority:
        yield authority


def test_request_token_end_to_end_and_openssl_agrees(tsa: LocalTSA) -> None:
    token = request_token(tsa.url, ENTRY, timeout=10)
    info = verify_token(token, ENTRY, load_ca_certificates(tsa.ca_cert_pem))
    assert info.authority == "Integration TSA"
    assert tsa.request_count == 1
    # Independent check by the openssl binary, and a sanity check that it can say no.
    assert openssl_verify(token, ENTRY, tsa.ca_cert_path)
    assert not openssl_verify(token, ENTRY + b"x", tsa.ca_cert_path)


def test_request_token_with_ec_key_and_root_ca() -> None:
    with LocalTSA(name="EC TSA", key_alg="ec", with_ca=True) as authority:
        token = request_token(authority.url, ENTRY)
        assert verify_token(token, ENTRY, load_ca_certificates(authority.ca_cert_pem)).authority == "EC TSA"
        assert openssl_verify(token, ENTRY, authority.ca_cert_path)


def test_request_token_retries_after_503s() -> None:
    with LocalTSA(fail_first=2) as authority:
        for _ in range(2):
            with pytest.raises(TimestampError) as caught:
                request_token(authority.url, ENTRY)
            assert authority.url in caught.value.reason
            assert "HTTP 503" in caught.value.reason
        token = request_token(authority.url, ENTRY)
        assert authority.request_count == 3
        verify_token(token, ENTRY, load_ca_certificates(authority.ca_cert_pem))


def test_request_token_fails_during_outage_and_works_after(tsa: LocalTSA) -> None:
    tsa.down("503")
    with pytest.raises(TimestampError, match="HTTP 503"):
        request_token(tsa.url, ENTRY)
    tsa.up()
    verify_token(request_token(tsa.url, ENTRY), ENTRY, load_ca_certificates(tsa.ca_cert_pem))


def test_request_token_fails_quickly_when_the_port_is_closed(tsa: LocalTSA) -> None:
    tsa.down("refuse")
    started = time.monotonic()
    with pytest.raises(TimestampError) as caught:
        request_token(tsa.url, ENTRY, timeout=2)
    assert time.monotonic() - started < 2
    assert f"TSA {tsa.url} could not be reached" in caught.value.reason
    tsa.up()  # same port again
    verify_token(request_token(tsa.url, ENTRY), ENTRY, load_ca_certificates(tsa.ca_cert_pem))


def test_request_token_times_out_on_a_silent_tsa(tsa: LocalTSA) -> None:
    tsa.down("hang")
    started = time.monotonic()
    with pytest.raises(TimestampError, match="could not be reached") as caught:
        request_token(tsa.url, ENTRY, timeout=0.5)
    assert time.monotonic() - started < 5
    assert tsa.url in caught.value.reason
    tsa.up()


def test_request_token_fails_for_a_port_nobody_listens_on() -> None:
    with socket.socket() as s:  # reserve and release a port: nothing listens on it afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tsa"
    with pytest.raises(TimestampError, match=f"TSA {url} could not be reached"):
        request_token(url, ENTRY, timeout=1)


def test_request_token_reports_a_rejection_with_the_url() -> None:
    with LocalTSA(digests=("sha512",)) as authority:
        with pytest.raises(TimestampError) as caught:
            request_token(authority.url, ENTRY)
    assert caught.value.reason.startswith(f"TSA {authority.url}: the TSA did not grant a token: status rejection")


def test_local_tsa_refuses_wrong_content_type(tsa: LocalTSA) -> None:
    """The local TSA is strict about RFC 3161 §3.4 as a real one is (a check of the test double itself)."""
    response = requests.post(tsa.url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=5)
    assert response.status_code == 415


def test_concurrent_requests_get_distinct_serials(tsa: LocalTSA) -> None:
    roots = load_ca_certificates(tsa.ca_cert_pem)
    messages = [ENTRY + bytes([i]) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda m: request_token(tsa.url, m), messages))
    for message, token in zip(messages, tokens, strict=True):
        verify_token(token, message, roots)
    assert sorted(token_info(t).serial for t in tokens) == list(range(1, 9))
    assert len({hashlib.sha256(t).digest() for t in tokens}) == 8
