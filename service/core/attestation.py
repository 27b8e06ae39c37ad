"""Depositor attestations (SPEC §2.2): the statement a depositor signs, the signature block, and checking both.

Owns: building statement bytes, assembling and strictly parsing attestation bytes, checking the signature with a
bare Ed25519 key or an X.509 certificate's key, validating the certificate path against CA certificates the
verifier trusts (at the statement's ``signed`` time), and naming the depositor.
Must not import: anything but the standard library, ``cryptography`` and ``service.core.errors`` / ``formats``.
No exception from ``cryptography`` or ``binascii`` leaves this module: every failure is an ``AttestationError``
whose ``check`` names the SPEC §6 step 8 sub-step ("8a" parse, "8b" statement, "8c" signature, "8d" path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification

from service.core.errors import EvidenceError, FormatError
from service.core.formats import format_time, parse_time

__all__ = [
    "ALGORITHMS",
    "MAX_ATTESTATION_SIZE",
    "Attestation",
    "AttestationError",
    "Depositor",
    "build_statement",
    "check_attestation",
    "parse_attestation",
    "sign_statement",
    "signed_window_problem",
]

HEADER = "evidence-ledger attestation v1"
MAX_ATTESTATION_SIZE = 65_536
MAX_CERTIFICATES = 8
ALGORITHMS = ("ed25519", "ecdsa-p256-sha256", "ecdsa-p384-sha384", "rsa-pkcs1-sha256", "rsa-pss-sha256")
# SPEC §2.2: `signed` lies within [received - 24 h, received + 5 min].
SIGNED_BEFORE = timedelta(hours=24)
SIGNED_AFTER = timedelta(minutes=5)
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")


class AttestationError(EvidenceError):
    """An attestation that fails one of SPEC §6 step 8's checks; ``check`` is "8a", "8b", "8c" or "8d"."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(reason)
        self.check = check


@dataclass(frozen=True)
class Attestation:
    """Parsed attestation bytes (SPEC §2.2)."""

    raw: bytes
    statement: bytes
    claims: tuple[str, ...]
    signed: datetime
    algorithm: str
    key: bytes | None
    certificates: tuple[x509.Certificate, ...]
    signature: bytes

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.raw).digest()


@dataclass(frozen=True)
class Depositor:
    """Who signed an attestation, as a verifier may state it (SPEC §2.2 "Depositor identity")."""

    kind: str  # "ed25519-key" or "x509"
    identity: str
    fingerprint: str
    ca_verified: bool | None  # None: no CA trusted (not checked); always None for a bare key
    signed: datetime

    def describe(self) -> str:
        if self.kind == "ed25519-key":
            return f"{self.identity} (bare Ed25519 key)"
        if self.ca_verified:
            return f"{self.identity} (certificate verified against a trusted CA)"
        return f"{self.identity} (certificate not checked against a CA)"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "identity": self.identity,
            "fingerprint": self.fingerprint,
            "ca_verified": self.ca_verified,
            "signed": format_time(self.signed),
        }


# --- building ---------------------------------------------------------------------------------------------------


def build_statement(claims: Sequence[str], signed: datetime) -> bytes:
    """The statement bytes of SPEC §2.2: header, the leaf's claim lines, ``signed <time>``."""
    return "".join(f"{line}\n" for line in (HEADER, *claims, f"signed {format_time(signed)}")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign_statement(
    statement: bytes,
    private_key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign ``statement`` and return the whole attestation bytes (what a client sends; the key stays with it).

    Without certificates the key must be Ed25519 (a bare key). The algorithm follows from the key: Ed25519,
    ECDSA P-256/SHA-256, ECDSA P-384/SHA-384, RSA PKCS#1 v1.5 with SHA-256.

    :raise AttestationError: a key kind SPEC §2.2 has no algorithm for, or a bare non-Ed25519 key.
    """
    if isinstance(private_key, Ed25519PrivateKey):
        algorithm, signature = "ed25519", private_key.sign(statement)
    elif isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name in ("secp256r1", "secp384r1"):
        digest: hashes.HashAlgorithm
        if private_key.curve.name == "secp256r1":
            algorithm, digest = "ecdsa-p256-sha256", hashes.SHA256()
        else:
            algorithm, digest = "ecdsa-p384-sha384", hashes.SHA384()
        signature = private_key.sign(statement, ec.ECDSA(digest))
    elif isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= 2048:
        algorithm, signature = "rsa-pkcs1-sha256", private_key.sign(statement, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise AttestationError("8a", "the key must be Ed25519, ECDSA on P-256 or P-384, or RSA of at least 2048 bits")
    block = f"algorithm {algorithm}\n"
    if certificates:
        block += "".join(f"certificate {_b64(c.public_bytes(Encoding.DER))}\n" for c in certificates)
    elif algorithm == "ed25519":
        pub = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        block += f"key {_b64(pub)}\n"
    else:
        raise AttestationError("8a", "an ECDSA or RSA key signs only with its certificate (pass the certificate chain)")
    return statement + b"\n" + f"{block}signature {_b64(signature)}\n".encode()


# --- parsing (8a) -----------------------------------------------------------------------------------------------


def _bad(reason: str) -> AttestationError:
    return AttestationError("8a", f"the attestation is not valid (SPEC §2.2): {reason}")


def _value_b64(number: int, key: str, value: str) -> bytes:
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _bad(f"line {number} ({key}) is not standard base64") from None
    if _b64(data) != value:
        raise _bad(f"line {number} ({key}) is not canonical standard base64 (with padding)")
    return data


def parse_attestation(raw: bytes) -> Attestation:
    """Parse attestation bytes strictly (SPEC §2.2).

    :raise AttestationError: (check "8a") anything that is not the §2.2 grammar, named with the line.
    """
    if len(raw) > MAX_ATTESTATION_SIZE:
        raise _bad(f"it is {len(raw)} bytes long, at most {MAX_ATTESTATION_SIZE} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if "\r" in text:
        raise _bad("contains a CR character; lines end in a bare LF")
    if (bad := _CONTROL.search(text)) is not None:
        raise _bad(f"contains control character U+{ord(bad.group()):04X} at offset {bad.start()}")
    if not text.endswith("\n"):
        raise _bad("missing final newline")
    split = text.find("\n\n")
    if split < 0:
        raise _bad("there is no empty line between the statement and the signature block")
    statement_text, block_text = text[: split + 1], text[split + 2 :]
    lines = statement_text[:-1].split("\n")
    if lines[0] != HEADER:
        raise _bad(f"the first line must be {HEADER!r}, found {lines[0]!r}")
    if len(lines) < 3 or not lines[-1].startswith("signed "):
        raise _bad("the statement must end with a 'signed <time>' line after its claim lines")
    for number, line in enumerate(lines[1:], start=2):
        key, sep, value = line.partition(" ")
        if not sep or not key or not value or " " in value:
            raise _bad(f"line {number} must be '<key> <value>' with one space, found {line!r}")
    try:
        signed = parse_time(lines[-1][len("signed ") :])
    except FormatError as e:
        raise _bad(f"the signed line: {e.reason}") from None
    first_block_line = len(lines) + 2
    block = block_text[:-1].split("\n") if block_text else []
    if len(block) < 3:
        raise _bad("the signature block needs an algorithm line, a key or certificate line and a signature line")
    pairs = []
    for number, line in enumerate(block, start=first_block_line):
        key, sep, value = line.partition(" ")
        if not sep or not key or not value or " " in value:
            raise _bad(f"line {number} must be '<key> <value>' with one space, found {line!r}")
        pairs.append((number, key, value))
    number, key, algorithm = pairs[0]
    if key != "algorithm":
        raise _bad(f"line {number}: the signature block starts with 'algorithm <name>', found {key!r}")
    if algorithm not in ALGORITHMS:
        raise _bad(f"line {number}: unknown signature algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    number, key, sig_text = pairs[-1]
    if key != "signature":
        raise _bad(f"line {number}: the signature block ends with 'signature <base64>', found {key!r}")
    signature = _value_b64(number, key, sig_text)
    middle = pairs[1:-1]
    kinds = {k for _, k, _ in middle}
    public_key: bytes | None = None
    certificates: list[x509.Certificate] = []
    if kinds == {"key"}:
        if len(middle) != 1:
            raise _bad("a bare key attestation has exactly one key line")
        if algorithm != "ed25519":
            raise _bad(f"a bare key is an Ed25519 key; algorithm {algorithm!r} needs a certificate")
        public_key = _value_b64(middle[0][0], "key", middle[0][2])
        if len(public_key) != 32:
            raise _bad(f"line {middle[0][0]}: an Ed25519 public key is 32 bytes, found {len(public_key)}")
    elif kinds == {"certificate"}:
        if len(middle) > MAX_CERTIFICATES:
            raise _bad(f"{len(middle)} certificate lines, at most {MAX_CERTIFICATES} allowed")
        for number, key, value in middle:
            der = _value_b64(number, key, value)
            try:
                certificates.append(x509.load_der_x509_certificate(der))
            except ValueError:
                raise _bad(f"line {number}: not a DER X.509 certificate") from None
    else:
        found = ", ".join(k for _, k, _ in middle) or "nothing"
        raise _bad(
            f"between algorithm and signature: one key line or 1-{MAX_CERTIFICATES} certificate lines, found {found}"
        )
    return Attestation(
        raw=bytes(raw),
        statement=statement_text.encode("utf-8"),
        claims=tuple(lines[1:-1]),
        signed=signed,
        algorithm=algorithm,
        key=public_key,
        certificates=tuple(certificates),
        signature=signature,
    )


# --- the statement against the leaf (8b) ------------------------------------------------------------------------


def signed_window_problem(signed: datetime, received: datetime) -> str | None:
    """Why ``signed`` is outside [received - 24 h, received + 5 min] (SPEC §2.2), or None."""
    if signed < received - SIGNED_BEFORE:
        return (
            f"the attestation was signed at {format_time(signed)}, more than 24 hours before the deposit was received "
            f"({format_time(received)})"
        )
    if signed > received + SIGNED_AFTER:
        return (
            f"the attestation was signed at {format_time(signed)}, more than 5 minutes after the deposit was received "
            f"({format_time(received)})"
        )
    return None


def check_statement(att: Attestation, claims: Sequence[str], received: datetime) -> None:
    """8b: the statement says what the leaf says, and was signed around the time the deposit was received."""
    want = tuple(claims)
    if att.claims != want:
        for i in range(max(len(want), len(att.claims))):
            have = att.claims[i] if i < len(att.claims) else None
            need = want[i] if i < len(want) else None
            if have != need:
                raise AttestationError(
                    "8b",
                    f"the attestation's statement does not match the leaf: the statement has {have!r} where the leaf "
                    f"has {need!r}",
                )
    problem = signed_window_problem(att.signed, received)
    if problem is not None:
        raise AttestationError("8b", problem)


# --- the signature (8c) -----------------------------------------------------------------------------------------


def _groups(hex_text: str) -> str:
    return " ".join(hex_text[i : i + 4] for i in range(0, len(hex_text), 4))


def check_signature(att: Attestation) -> Depositor:
    """8c: the signature verifies over the statement with the key of the ``key`` line or first certificate."""
    if att.key is not None:
        public: object = Ed25519PublicKey.from_public_bytes(att.key)
        fingerprint = hashlib.sha256(att.key).hexdigest()
        depositor = Depositor("ed25519-key", f"Ed25519 key {_groups(fingerprint)}", fingerprint, None, att.signed)
    else:
        certificate = att.certificates[0]
        try:
            public = certificate.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise AttestationError(
                "8c", "the depositor certificate's public key is of a kind this verifier does not read"
            ) from None
        fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
        depositor = Depositor("x509", certificate.subject.rfc4514_string(), fingerprint, None, att.signed)
    try:
        _verify(att.algorithm, public, att.signature, att.statement)
    except InvalidSignature:
        raise AttestationError(
            "8c", f"the attestation's {att.algorithm} signature does not verify with the key of {depositor.identity}"
        ) from None
    return depositor


def _verify(algorithm: str, public: object, signature: bytes, message: bytes) -> None:
    """Verify or raise InvalidSignature / AttestationError (algorithm that does not fit the key)."""

    def unfit(kind: str) -> AttestationError:
        return AttestationError("8c", f"the signature algorithm {algorithm} does not fit the key ({kind})")

    kind = _key_kind(public)
    if algorithm == "ed25519":
        if not isinstance(public, Ed25519PublicKey):
            raise unfit(kind)
        public.verify(signature, message)
    elif algorithm.startswith("ecdsa-"):
        curve, digest = (
            ("secp256r1", hashes.SHA256()) if algorithm == "ecdsa-p256-sha256" else ("secp384r1", hashes.SHA384())
        )
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != curve:
            raise unfit(kind)
        public.verify(signature, message, ec.ECDSA(digest))
    else:
        if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
            raise unfit(kind)
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15() if algorithm == "rsa-pkcs1-sha256" else padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        )
        public.verify(signature, message, pad, hashes.SHA256())


def _key_kind(public: object) -> str:
    if isinstance(public, Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"an EC key on {public.curve.name}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"an RSA key of {public.key_size} bits"
    return f"a {type(public).__name__}"


# --- the certificate path (8d) ----------------------------------------------------------------------------------


def _name(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _valid_at(certificate: x509.Certificate, at: datetime) -> str | None:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    name = _name(certificate)
    if at < start:
        return f"the certificate {name!r} is not yet valid at {format_time(at)} (valid from {format_time(start)})"
    if at > end:
        return f"the certificate {name!r} has expired: valid until {format_time(end)}, signed at {format_time(at)}"
    return None


def validate_path(att: Attestation, trusted: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """8d: an RFC 5280 path from the depositor certificate to a trusted CA, valid at ``att.signed``.

    Uses ``cryptography.x509.verification`` (WebPKI rules for the CA certificates; any extended key usage for
    the depositor's). Before that, it walks the path by names to say in words what is wrong.

    :raise AttestationError: (check "8d") with the reason.
    """
    if not att.certificates:
        raise AttestationError("8d", "a bare key has no certificate to validate")
    if not trusted:
        raise AttestationError("8d", "no depositor CA certificate is trusted")
    at = att.signed
    depositor, *others = att.certificates
    current = depositor
    seen = 0
    while True:
        problem = _valid_at(current, at)
        if problem is not None:
            raise AttestationError("8d", problem)
        if any(t.subject == current.issuer for t in trusted):
            break
        issuer = next((c for c in others if c.subject == current.issuer and c is not current), None)
        if issuer is None or seen > MAX_CERTIFICATES:
            if current.issuer == current.subject:
                raise AttestationError(
                    "8d",
                    f"the certificate path ends at the root {_name(current)!r}, which is not a trusted depositor CA",
                )
            missing = current.issuer.rfc4514_string()
            raise AttestationError(
                "8d",
                f"no path to a trusted depositor CA: the issuer {missing!r} of {_name(current)!r} is neither trusted "
                "nor among the attestation's certificates (an intermediate CA certificate is missing, or the "
                "certificate is from another CA)",
            )
        current, seen = issuer, seen + 1
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trusted)))
        .time(at)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
    )
    try:
        verified = builder.build_client_verifier().verify(depositor, others)
    except verification.VerificationError as exc:
        raise AttestationError(
            "8d", f"the certificate path to a trusted depositor CA does not validate at {format_time(at)}: {exc}"
        ) from None
    return list(verified.chain)


def check_attestation(
    raw: bytes, claims: Sequence[str], received: datetime, trusted_cas: Sequence[x509.Certificate] | None
) -> Depositor:
    """Every step 8 check in order (8a-8d). ``trusted_cas`` None or empty: the path is not checked (8d skipped).

    :raise AttestationError: the first failing check.
    """
    att = parse_attestation(raw)
    check_statement(att, claims, received)
    depositor = check_signature(att)
    if att.certificates and trusted_cas:
        validate_path(att, trusted_cas)
        depositor = Depositor(depositor.kind, depositor.identity, depositor.fingerprint, True, depositor.signed)
    return depositor
