"""service.core.timestamps: RFC 3161 requests, replies and the offline token check (SPEC §5, §6 step 7).

Every token here is real: made by ``openssl ts -reply`` through tests.support.local_tsa.LocalTSA
(called directly, without HTTP). Tampered tokens are derived from real ones.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms, core, tsp

from service.core.errors import TimestampError, TimestampInvalid, VerificationError
from service.core.timestamps import (
    TimestampInfo,
    build_request,
    load_ca_certificates,
    token_from_response,
    token_info,
    verify_token,
)
from tests.support.local_tsa import LocalTSA, openssl_verify

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl binary is not installed")

ENTRY = (
    b"evidence-ledger batch v1\nseq 0\nsize 1\nroot AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    b"sealed 2026-11-28T16:13:35.123456Z\n"
)


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    authority = LocalTSA(name="Unit Test TSA")
    yield authority
    authority.close()


@pytest.fixture(scope="module")
def other_tsa() -> Iterator[LocalTSA]:
    authority = LocalTSA(name="Unrelated TSA")
    yield authority
    authority.close()


def make_token(authority: LocalTSA, message: bytes = ENTRY, nonce: int | None = 42) -> bytes:
    digest = hashlib.sha256(message).digest()
    reply = authority.answer(build_request(digest, nonce=nonce))
    return token_from_response(reply, digest=digest, nonce=nonce)


@pytest.fixture(scope="module")
def token(tsa: LocalTSA) -> bytes:
    return make_token(tsa)


def replace_tst_info(token_der: bytes, **fields: object) -> bytes:
    """Re-encode the token with some TSTInfo fields changed (the signature stays the TSA's)."""
    content_info = cms.ContentInfo.load(token_der)
    encap = content_info["content"]["encap_content_info"]
    tst_info = encap["content"].parsed
    for name, value in fields.items():
        tst_info[name] = value
    encap["content"] = core.ParsableOctetString(tst_info.dump(force=True))
    return bytes(content_info.dump(force=True))


# --- build_request ----------------------------------------------------------------------------


def test_build_request_is_read_by_openssl_as_sha256_query_with_cert_req_and_nonce(tmp_path: Path) -> None:
    digest = hashlib.sha256(ENTRY).digest()
    query = tmp_path / "q.tsq"
    query.write_bytes(build_request(digest, nonce=0x1234ABCD))
    text = subprocess.run(
        ["openssl", "ts", "-query", "-in", str(query), "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert "Hash Algorithm: sha256" in text
    assert "Nonce: 0x1234ABCD" in text
    assert "Certificate required: yes" in text
    # openssl prints the imprint as a spaced hex dump; check the bytes through asn1crypto instead
    parsed = tsp.TimeStampReq.load(query.read_bytes())
    assert parsed["message_imprint"]["hashed_message"].native == digest


def test_build_request_without_nonce_omits_it(tmp_path: Path) -> None:
    query = tmp_path / "q.tsq"
    query.write_bytes(build_request(bytes(32), nonce=None))
    text = subprocess.run(
        ["openssl", "ts", "-query", "-in", str(query), "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert "Nonce: unspecified" in text


@pytest.mark.parametrize("size", [0, 20, 31, 33, 64])
def test_build_request_rejects_digest_that_is_not_32_bytes(size: int) -> None:
    with pytest.raises(TimestampError, match=f"32 bytes, got {size}"):
        build_request(bytes(size), nonce=1)


# --- token_from_response ----------------------------------------------------------------------


def test_token_from_response_returns_the_token_openssl_extracts(tsa: LocalTSA, tmp_path: Path) -> None:
    digest = hashlib.sha256(ENTRY).digest()
    reply = tsa.answer(build_request(digest, nonce=7))
    (tmp_path / "r.tsr").write_bytes(reply)
    subprocess.run(
        [
            "openssl",
            "ts",
            "-reply",
            "-in",
            str(tmp_path / "r.tsr"),
            "-token_out",
            "-out",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        check=True,
    )
    assert token_from_response(reply, digest=digest, nonce=7) == (tmp_path / "t").read_bytes()


def test_token_from_response_rejects_a_rejection_with_status_and_failure_text() -> None:
    picky = LocalTSA(name="SHA-512 only TSA", digests=("sha512",))
    try:
        digest = hashlib.sha256(ENTRY).digest()
        reply = picky.answer(build_request(digest, nonce=1))
    finally:
        picky.close()
    with pytest.raises(TimestampError) as caught:
        token_from_response(reply, digest=digest, nonce=1)
    assert "status rejection" in caught.value.reason
    assert "Message digest algorithm is not supported." in caught.value.reason
    assert "bad_alg" in caught.value.reason


def test_token_from_response_rejects_a_sha1_query_reply(tsa: LocalTSA) -> None:
    sha1_query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha1"}, "hashed_message": bytes(20)},
            "cert_req": True,
        }
    ).dump()
    with pytest.raises(TimestampError, match="status rejection"):
        token_from_response(tsa.answer(sha1_query), digest=bytes(32), nonce=None)


def test_token_from_response_rejects_nonce_mismatch(tsa: LocalTSA) -> None:
    digest = hashlib.sha256(ENTRY).digest()
    reply = tsa.answer(build_request(digest, nonce=1000))
    with pytest.raises(TimestampError, match="the token's nonce is 1000, we sent 1001"):
        token_from_response(reply, digest=digest, nonce=1001)


def test_token_from_response_rejects_imprint_mismatch(tsa: LocalTSA) -> None:
    digest = hashlib.sha256(ENTRY).digest()
    reply = tsa.answer(build_request(digest, nonce=3))
    with pytest.raises(TimestampError, match=f"imprint is {digest.hex()}, we asked for {'00' * 32}"):
        token_from_response(reply, digest=bytes(32), nonce=3)


@pytest.mark.parametrize("der", [b"", b"not DER at all", b"\x30\x03\x02\x01\x00", b"\x30\x80"])
def test_token_from_response_rejects_bytes_that_are_not_a_reply(der: bytes) -> None:
    with pytest.raises(TimestampError):
        token_from_response(der, digest=bytes(32), nonce=None)


# --- verify_token: accepts --------------------------------------------------------------------


def test_verify_token_accepts_a_good_token(tsa: LocalTSA, token: bytes) -> None:
    before = datetime.datetime.now(datetime.UTC)
    fresh = make_token(tsa)
    info = verify_token(fresh, ENTRY, load_ca_certificates(tsa.ca_cert_pem))
    after = datetime.datetime.now(datetime.UTC)
    assert info.gen_time.tzinfo == datetime.UTC
    # genTime has whole seconds (openssl truncates) and accuracy 1 s
    assert before - datetime.timedelta(seconds=2) <= info.gen_time <= after + datetime.timedelta(seconds=2)
    assert info.authority == "Unit Test TSA"
    assert info.policy == "1.2.3.4.1"
    assert info.serial >= 1
    assert openssl_verify(fresh, ENTRY, tsa.ca_cert_path)


def test_token_info_reads_the_same_fields_without_checking(tsa: LocalTSA, token: bytes) -> None:
    assert token_info(token) == verify_token(token, ENTRY, load_ca_certificates(tsa.ca_cert_pem))


def test_serials_increase_per_token(tsa: LocalTSA) -> None:
    first, second = token_info(make_token(tsa)), token_info(make_token(tsa))
    assert second.serial == first.serial + 1


@pytest.mark.parametrize("key_alg", ["rsa", "ec"])
def test_verify_token_accepts_tsa_certificate_issued_by_a_root(key_alg: str) -> None:
    authority = LocalTSA(name="Chained TSA", key_alg="ec" if key_alg == "ec" else "rsa", with_ca=True)
    try:
        token = make_token(authority)
        roots = load_ca_certificates(authority.ca_cert_pem)
        info = verify_token(token, ENTRY, roots)
        assert info.authority == "Chained TSA"  # the TSA, not its root CA
        assert openssl_verify(token, ENTRY, authority.ca_cert_path)
        # The TSA certificate alone is not a trust anchor: it is not self-signed.
        with pytest.raises(TimestampInvalid, match="chains to a trusted TSA certificate"):
            verify_token(token, ENTRY, load_ca_certificates(authority.tsa_cert_pem))
    finally:
        authority.close()


def test_verify_token_accepts_among_several_roots_and_duplicates(
    tsa: LocalTSA, other_tsa: LocalTSA, token: bytes
) -> None:
    roots = load_ca_certificates(other_tsa.ca_cert_pem + tsa.ca_cert_pem + tsa.ca_cert_pem)
    assert len(roots) == 3
    assert verify_token(token, ENTRY, roots).authority == "Unit Test TSA"


def test_verify_token_checks_the_chain_at_gen_time_not_now() -> None:
    now = datetime.datetime.now(datetime.UTC)
    short_lived = LocalTSA(name="Short-lived TSA", valid_until=now + datetime.timedelta(seconds=2))
    try:
        token = make_token(short_lived)
        roots = load_ca_certificates(short_lived.ca_cert_pem)
        while datetime.datetime.now(datetime.UTC) <= now + datetime.timedelta(seconds=3):
            time.sleep(0.2)
        # The certificate has expired by now, but it was valid at genTime.
        assert verify_token(token, ENTRY, roots).authority == "Short-lived TSA"
    finally:
        short_lived.close()


# --- verify_token: rejects --------------------------------------------------------------------


def test_verify_token_rejects_wrong_message(tsa: LocalTSA, token: bytes) -> None:
    other = ENTRY.replace(b"seq 0", b"seq 1")
    with pytest.raises(TimestampInvalid) as caught:
        verify_token(token, other, load_ca_certificates(tsa.ca_cert_pem))
    assert caught.value.reason == (
        f"the token's imprint is {hashlib.sha256(ENTRY).hexdigest()}, "
        f"SHA-256 of the ledger entry is {hashlib.sha256(other).hexdigest()}"
    )
    assert caught.value.step == 7
    assert isinstance(caught.value, VerificationError)


def test_verify_token_rejects_token_from_unrelated_root(other_tsa: LocalTSA, token: bytes) -> None:
    with pytest.raises(TimestampInvalid) as caught:
        verify_token(token, ENTRY, load_ca_certificates(other_tsa.ca_cert_pem))
    assert "not signed by a certificate that chains to a trusted TSA certificate" in caught.value.reason
    assert "CN=Unrelated TSA" in caught.value.reason


@pytest.mark.parametrize(
    ("valid_from_days", "valid_until_days", "why"),
    [(1, 2, "not yet valid"), (-2, -1, "expired")],
)
def test_verify_token_rejects_certificate_not_valid_at_gen_time(
    valid_from_days: int, valid_until_days: int, why: str
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    authority = LocalTSA(
        valid_from=now + datetime.timedelta(days=valid_from_days),
        valid_until=now + datetime.timedelta(days=valid_until_days),
    )
    try:
        token = make_token(authority)
        with pytest.raises(TimestampInvalid, match=why):
            verify_token(token, ENTRY, load_ca_certificates(authority.ca_cert_pem))
    finally:
        authority.close()


def test_verify_token_rejects_flipped_signature_byte(tsa: LocalTSA, token: bytes) -> None:
    signer_info = cms.ContentInfo.load(token)["content"]["signer_infos"][0]
    signature = signer_info["signature"].native
    assert token.endswith(signature)  # no unsigned attributes: the signature value ends the token
    corrupted = bytearray(token)
    corrupted[-len(signature) // 2] ^= 0x01
    with pytest.raises(TimestampInvalid, match="signature does not verify"):
        verify_token(bytes(corrupted), ENTRY, load_ca_certificates(tsa.ca_cert_pem))
    assert not openssl_verify(bytes(corrupted), ENTRY, tsa.ca_cert_path)


def test_verify_token_rejects_tst_info_altered_to_another_imprint(tsa: LocalTSA, token: bytes) -> None:
    other = b"another ledger entry\n"
    forged = replace_tst_info(
        token,
        message_imprint={
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": hashlib.sha256(other).digest(),
        },
    )
    assert token_info(forged).serial == token_info(token).serial  # still parses as a token
    with pytest.raises(TimestampInvalid, match="signature does not verify"):
        verify_token(forged, other, load_ca_certificates(tsa.ca_cert_pem))


def test_verify_token_rejects_tst_info_altered_to_earlier_gen_time(tsa: LocalTSA, token: bytes) -> None:
    earlier = token_info(token).gen_time - datetime.timedelta(minutes=10)  # the certificate was valid
    forged = replace_tst_info(token, gen_time=earlier)
    assert token_info(forged).gen_time == earlier
    with pytest.raises(TimestampInvalid, match="signature does not verify"):
        verify_token(forged, ENTRY, load_ca_certificates(tsa.ca_cert_pem))


def test_verify_token_rejects_non_sha256_imprint(tsa: LocalTSA) -> None:
    digest = hashlib.sha512(ENTRY).digest()
    query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha512"}, "hashed_message": digest},
            "cert_req": True,
        }
    ).dump()
    reply = tsp.TimeStampResp.load(tsa.answer(query))
    token = bytes(reply["time_stamp_token"].dump())
    with pytest.raises(TimestampInvalid, match="imprint algorithm is SHA-512, expected SHA-256"):
        verify_token(token, ENTRY, load_ca_certificates(tsa.ca_cert_pem))


def test_verify_token_rejects_token_without_certificate(tsa: LocalTSA) -> None:
    digest = hashlib.sha256(ENTRY).digest()
    query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
            "cert_req": False,
        }
    ).dump()
    token = token_from_response(tsa.answer(query), digest=digest, nonce=None)
    with pytest.raises(TimestampInvalid, match="carries no certificate for its signer"):
        verify_token(token, ENTRY, load_ca_certificates(other_root_pem()))


def other_root_pem() -> bytes:
    stranger = LocalTSA(name="Stranger")
    try:
        return stranger.ca_cert_pem
    finally:
        stranger.close()


def test_verify_token_rejects_altered_copy_of_the_tsa_certificate(tsa: LocalTSA, token: bytes) -> None:
    """An altered certificate added beside the real one must not lend its name to the token."""
    content_info = cms.ContentInfo.load(token)
    signed_data = content_info["content"]
    real = signed_data["certificates"][0].chosen
    fake = real.copy()
    fake["tbs_certificate"]["subject"] = fake["tbs_certificate"]["subject"].build({"common_name": "Forged TSA"})
    signed_data["certificates"] = [fake, real]
    forged = bytes(content_info.dump(force=True))
    with pytest.raises(TimestampInvalid, match="different certificates for its signer"):
        verify_token(forged, ENTRY, load_ca_certificates(tsa.ca_cert_pem))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t[:-1], id="truncated-by-one"),
        pytest.param(lambda t: t[:100], id="truncated-to-100"),
        pytest.param(lambda t: t + b"\x00", id="trailing-byte"),
        pytest.param(lambda t: b"", id="empty"),
        pytest.param(lambda t: b"not DER", id="not-der"),
        pytest.param(lambda t: b"\x30\x00", id="empty-sequence"),
    ],
)
def test_verify_token_rejects_malformed_bytes(tsa: LocalTSA, token: bytes, mutate: object) -> None:
    assert callable(mutate)
    bad = mutate(token)
    assert isinstance(bad, bytes)
    with pytest.raises(TimestampInvalid, match="not a DER RFC 3161 TimeStampToken"):
        verify_token(bad, ENTRY, load_ca_certificates(tsa.ca_cert_pem))
    with pytest.raises(TimestampInvalid):
        token_info(bad)


def test_verify_token_any_flipped_bit_is_rejected_or_changes_nothing(tsa: LocalTSA, token: bytes) -> None:
    """Flip one bit at every offset: only TimestampInvalid may come out, and a token that still verifies
    (a flip outside what is signed, e.g. an unused string type) must say exactly the same thing."""
    roots = load_ca_certificates(tsa.ca_cert_pem)
    good = verify_token(token, ENTRY, roots)
    rejected = 0
    for offset in range(len(token)):
        mutated = bytearray(token)
        mutated[offset] ^= 0x01
        try:
            info = verify_token(bytes(mutated), ENTRY, roots)
        except TimestampInvalid:
            rejected += 1
        else:
            assert info == good, f"flip at offset {offset} changed the verified content"
    assert rejected > len(token) * 0.9


def test_verify_token_needs_a_trusted_root(token: bytes) -> None:
    with pytest.raises(TimestampInvalid, match="no TSA certificate is trusted"):
        verify_token(token, ENTRY, [])


# --- load_ca_certificates ----------------------------------------------------------------------


def test_load_ca_certificates_reads_every_pem_certificate(tsa: LocalTSA, other_tsa: LocalTSA) -> None:
    certificates = load_ca_certificates(tsa.ca_cert_pem + b"\n" + other_tsa.ca_cert_pem)
    names = [c.subject.rfc4514_string() for c in certificates]
    assert names == ["CN=Unit Test TSA,O=Evidence Ledger tests", "CN=Unrelated TSA,O=Evidence Ledger tests"]


@pytest.mark.parametrize("pem", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_load_ca_certificates_rejects_non_certificates(pem: bytes) -> None:
    with pytest.raises(TimestampInvalid, match="no readable PEM certificate"):
        load_ca_certificates(pem)


def test_timestamp_info_is_a_value() -> None:
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert TimestampInfo(when, "A", 1, "1.2") == TimestampInfo(when, "A", 1, "1.2")
