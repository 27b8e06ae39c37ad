"""RFC 3161 time-stamps (SPEC §5, §6 step 7): build the request, read the reply, check a token offline.

Owns: the DER TimeStampReq we send, extracting the TimeStampToken from a TimeStampResp, and the offline
check of a token against trusted TSA root certificates. The HTTP call lives in ``service.tsa_client``.
Must not import: Flask, SQLAlchemy, Celery, requests (the offline verifier reaches this module).

Libraries: ``asn1crypto`` builds and reads the ASN.1 structures (no hand-written DER);
``rfc3161-client`` checks the CMS signature and the certificate chain at genTime, and the critical
timeStamping EKU of the signing certificate. Every failure leaves as ``TimestampError`` (getting a token)
or ``TimestampInvalid`` (checking one), never as a foreign exception.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import TimeStampResponse, VerificationError, VerifierBuilder, decode_timestamp_response

from service.core.errors import EvidenceError, TimestampError, TimestampInvalid

SHA256_OID = "2.16.840.1.101.3.4.2.1"
_HASH_NAMES = {
    "1.3.14.3.2.26": "SHA-1",
    SHA256_OID: "SHA-256",
    "2.16.840.1.101.3.4.2.2": "SHA-384",
    "2.16.840.1.101.3.4.2.3": "SHA-512",
}


@dataclass(frozen=True)
class TimestampInfo:
    """What a token says: ``gen_time`` (UTC), ``authority`` (TSA certificate CN), ``serial``, ``policy``."""

    gen_time: datetime.datetime
    authority: str
    serial: int
    policy: str


class _TimeStampResp(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 3161 §2.4.2 TimeStampResp. asn1crypto's own class makes the token mandatory, but a
    rejection carries none, so the token is optional here."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


# --- the request and the reply (used by the worker through tsa_client) ---------------------------


def build_request(digest: bytes, *, nonce: int | None) -> bytes:
    """Return a DER TimeStampReq for the SHA-256 ``digest``, with certReq TRUE and the ``nonce`` (if any).

    :raise TimestampError: the digest is not 32 bytes or the nonce is negative.
    """
    if len(digest) != 32:
        raise TimestampError(f"a SHA-256 digest is 32 bytes, got {len(digest)}")
    if nonce is not None and nonce < 0:
        raise TimestampError(f"the nonce must not be negative, got {nonce}")
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return bytes(request.dump())


def token_from_response(der: bytes, *, digest: bytes, nonce: int | None) -> bytes:
    """Return the DER TimeStampToken (a CMS ContentInfo) carried by the TimeStampResp ``der``.

    Checks that the status is ``granted``, that the token's imprint is SHA-256 over ``digest`` and, when
    ``nonce`` is given, that the token echoes it. The signature is checked later, by ``verify_token``.

    :raise TimestampError: not a TimeStampResp, not granted (with the TSA's status text and failure
        info), no token, or an imprint or nonce that does not match the request.
    """
    try:
        response = _TimeStampResp.load(der, strict=True)
        status_info = response["status"]
        status = status_info["status"].native
        status_text = status_info["status_string"].native
        fail_info = status_info["fail_info"].native
        token = response["time_stamp_token"]
    except Exception as e:  # asn1crypto parses lazily and raises ValueError, TypeError, ...
        raise TimestampError(f"the TSA's reply is not a DER TimeStampResp: {_short(e)}") from e
    if status != "granted":
        text = "; ".join(status_text) if status_text else "no status text"
        failures = ", ".join(sorted(fail_info)) if fail_info else "none given"
        raise TimestampError(f"the TSA did not grant a token: status {status} ({text}; failure info: {failures})")
    if not isinstance(token, cms.ContentInfo):
        raise TimestampError("the TSA's reply is granted but carries no TimeStampToken")
    try:
        token_der = bytes(token.dump())
    except Exception as e:
        raise TimestampError(f"the TSA's TimeStampToken is malformed: {_short(e)}") from e
    info = _decode(token_der, TimestampError).tst_info
    algorithm = info.message_imprint.hash_algorithm.dotted_string
    if algorithm != SHA256_OID:
        raise TimestampError(f"the token's imprint algorithm is {_hash_name(algorithm)}, we asked for SHA-256")
    imprint = info.message_imprint.message
    if imprint != digest:
        raise TimestampError(f"the token's imprint is {imprint.hex()}, we asked for {digest.hex()}")
    if nonce is not None and info.nonce != nonce:
        raise TimestampError(f"the token's nonce is {info.nonce}, we sent {nonce}")
    return token_der


# --- the offline check (SPEC §6 step 7) --------------------------------------------------------


def load_ca_certificates(pem_bytes: bytes) -> list[x509.Certificate]:
    """Return every certificate in the PEM text ``pem_bytes`` (trusted TSA roots).

    :raise TimestampInvalid: no certificate, or a PEM block that is not a certificate.
    """
    try:
        certificates = x509.load_pem_x509_certificates(pem_bytes)
    except ValueError as e:
        raise TimestampInvalid(f"the TSA certificate file holds no readable PEM certificate: {e}") from e
    return certificates


def token_info(token: bytes) -> TimestampInfo:
    """Return what the DER TimeStampToken ``token`` says, WITHOUT checking it (for display only).

    :raise TimestampInvalid: the bytes are not an RFC 3161 TimeStampToken.
    """
    response = _decode(token, TimestampInvalid)
    return _info(response, _signer_certificate(response))


def verify_token(token: bytes, message: bytes, roots: Sequence[x509.Certificate]) -> TimestampInfo:
    """Check the DER TimeStampToken ``token`` over ``message`` (the ledger entry bytes); return its content.

    Checks, in order: the token parses; its imprint algorithm is SHA-256; the CMS signature verifies with
    a certificate that chains to one of ``roots``, validated at the token's genTime; that certificate has
    the critical timeStamping EKU; the imprint equals SHA-256(``message``).

    :raise TimestampInvalid: with a reason that says which check failed and what was found.
    """
    if not roots:
        raise TimestampInvalid("no TSA certificate is trusted, so the token cannot be checked")
    response = _decode(token, TimestampInvalid)
    try:
        tst_info = response.tst_info
        algorithm = tst_info.message_imprint.hash_algorithm.dotted_string
        imprint = tst_info.message_imprint.message
        gen_time = tst_info.gen_time
    except Exception as e:
        raise TimestampInvalid(f"the token's TSTInfo cannot be read: {_short(e)}") from e
    if algorithm != SHA256_OID:
        raise TimestampInvalid(f"the token's imprint algorithm is {_hash_name(algorithm)}, expected SHA-256")

    signer = _unique_signer_certificate(response, roots)
    builder = VerifierBuilder()
    seen: set[bytes] = set()
    for root in roots:
        der = root.public_bytes(Encoding.DER)
        if der not in seen:  # the builder refuses duplicates
            seen.add(der)
            builder = builder.add_root_certificate(root)
    try:
        # The imprint is compared below, with our own wording; here the library checks the signature,
        # the chain at genTime and the signing certificate's critical timeStamping EKU.
        builder.build().verify(response, imprint)
    except VerificationError as e:
        raise TimestampInvalid(_verification_reason(str(e), roots, gen_time)) from e
    except Exception as e:
        raise TimestampInvalid(f"the token is malformed and cannot be checked: {_short(e)}") from e

    expected = hashlib.sha256(message).digest()
    if imprint != expected:
        raise TimestampInvalid(
            f"the token's imprint is {imprint.hex()}, SHA-256 of the ledger entry is {expected.hex()}"
        )
    return _info(response, signer)


# --- helpers -----------------------------------------------------------------------------------


def _decode(token: bytes, error: type[EvidenceError]) -> TimeStampResponse:
    """Parse a bare token with rfc3161-client, which reads whole responses: wrap it in a granted one.

    The token's own bytes are kept as they are (asn1crypto re-emits parsed, unmodified values verbatim),
    so its signature is checked over exactly what the TSA signed.
    """
    try:
        content_info = cms.ContentInfo.load(token, strict=True)
        content_type = content_info["content_type"].dotted
        if content_type != "1.2.840.113549.1.7.2":
            raise error(f"the token is a CMS {content_info['content_type'].native}, not a SignedData")
        encap_type = content_info["content"]["encap_content_info"]["content_type"].dotted
        if encap_type != "1.2.840.113549.1.9.16.1.4":
            raise error(f"the token signs a {encap_type} content, not an RFC 3161 TSTInfo")
        wrapped = _TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": content_info}).dump()
        response = decode_timestamp_response(wrapped)
        response.tst_info  # noqa: B018 (parse now, so that a broken TSTInfo fails here)
    except EvidenceError:
        raise
    except Exception as e:  # asn1crypto: ValueError/TypeError/...; rfc3161-client: ValueError
        raise error(f"the token is not a DER RFC 3161 TimeStampToken: {_short(e)}") from e
    return response


def _signer_certificate(response: TimeStampResponse) -> x509.Certificate | None:
    """The embedded certificate named by the SignerInfo's issuer and serial, unchecked (display only)."""
    try:
        signer_infos = list(response.signed_data.signer_infos)
        if len(signer_infos) != 1:
            return None
        signer = signer_infos[0]
        for der in response.signed_data.certificates:
            cert = x509.load_der_x509_certificate(der)
            if cert.issuer == signer.issuer and cert.serial_number == signer.serial_number:
                return cert
    except Exception:  # a display helper: an unreadable certificate just means "no name from it"
        return None
    return None


def _unique_signer_certificate(response: TimeStampResponse, roots: Sequence[x509.Certificate]) -> x509.Certificate:
    """The one certificate, embedded or trusted, that the SignerInfo's issuer and serial name.

    The embedded certificates are outside the signature: anyone can add an altered copy of the TSA
    certificate next to the real one. OpenSSL then verifies with one of them while a name could be read
    from the other, so two different certificates with the signer's issuer and serial are refused.
    """
    try:
        signer_infos = list(response.signed_data.signer_infos)
        if len(signer_infos) != 1:
            raise TimestampInvalid(f"the token has {len(signer_infos)} signers, expected exactly one")
        issuer, serial = signer_infos[0].issuer, signer_infos[0].serial_number
        embedded = [x509.load_der_x509_certificate(der) for der in response.signed_data.certificates]
        matches = {
            cert.public_bytes(Encoding.DER): cert
            for cert in [*embedded, *roots]
            if cert.issuer == issuer and cert.serial_number == serial
        }
        if not matches:
            raise TimestampInvalid(
                f"the token carries no certificate for its signer (issuer {issuer.rfc4514_string()}, "
                f"serial {serial}) and no trusted certificate matches"
            )
        if len(matches) > 1:
            raise TimestampInvalid(
                f"the token holds {len(matches)} different certificates for its signer (issuer "
                f"{issuer.rfc4514_string()}, serial {serial}): one has been altered"
            )
    except TimestampInvalid:
        raise
    except Exception as e:  # the certificates and names are parsed lazily
        raise TimestampInvalid(f"the token's signer or certificates cannot be read: {_short(e)}") from e
    return next(iter(matches.values()))


def _name_of(name: x509.Name) -> str:
    common_names = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if common_names:
        value = common_names[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string()


def _info(response: TimeStampResponse, signer: x509.Certificate | None) -> TimestampInfo:
    try:
        tst_info = response.tst_info
        if signer is not None:
            authority = _name_of(signer.subject)
        else:
            try:
                general_name = tst_info.name
            except Exception:  # no tsa field in the TSTInfo
                general_name = None
            if isinstance(general_name, x509.DirectoryName):
                authority = _name_of(general_name.value)
            elif general_name is not None:
                authority = str(general_name.value)
            else:
                authority = "unnamed TSA"
        return TimestampInfo(
            gen_time=tst_info.gen_time.astimezone(datetime.UTC),
            authority=authority,
            serial=tst_info.serial_number,
            policy=tst_info.policy.dotted_string,
        )
    except Exception as e:
        raise TimestampInvalid(f"the token's TSTInfo cannot be read: {_short(e)}") from e


def _verification_reason(library_message: str, roots: Sequence[x509.Certificate], gen_time: datetime.datetime) -> str:
    """Turn rfc3161-client's VerificationError text into a reason a person understands."""
    trusted = "; ".join(root.subject.rfc4514_string() for root in roots)
    details = _openssl_details(library_message)
    if "certificate verify error" in library_message:
        return (
            "the token is not signed by a certificate that chains to a trusted TSA certificate "
            f"(trusted: {trusted}) valid at its genTime {gen_time.isoformat()}: {details}"
        )
    if library_message.startswith("Error while verifying certificates"):
        return f"the token's signature does not verify (the token was altered or is corrupt): {details}"
    if "EKU" in library_message:
        return "the TSA certificate is not marked for time-stamping as RFC 3161 §2.3 requires: " + library_message
    if "Certificates neither found" in library_message:
        return "the token carries no TSA certificate (it was requested without certReq)"
    return f"the token does not verify: {library_message}"


_OPENSSL_REASON = re.compile(r'(?:reason|data): "([^"]*)"')


def _openssl_details(library_message: str) -> str:
    """The short OpenSSL reasons inside a Rust ErrorStack dump, without codes, files and lines."""
    found = list(dict.fromkeys(_OPENSSL_REASON.findall(library_message)))
    return "; ".join(found) if found else library_message


def _hash_name(oid: str) -> str:
    return _HASH_NAMES.get(oid, oid)


def _short(e: BaseException) -> str:
    """The first line of an exception's text (with its type when the text alone says nothing)."""
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    if isinstance(e, (KeyError, IndexError, TypeError)):
        return f"{type(e).__name__}: {lines[0]}"
    return lines[0]
