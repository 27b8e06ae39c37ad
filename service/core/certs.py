"""X.509 certificate files (trusted RFC 3161 TSA roots): PEM with one or more certificates, or DER.

Owns: reading such files with a clear error. Must not import: anything but ``cryptography`` and ``service.core.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from service.core.errors import ConfigError


def load_certificate_files(paths: Iterable[str | Path]) -> list[x509.Certificate]:
    """Every certificate in ``paths`` (PEM, possibly several per file, or DER), in order.

    :raise ConfigError: a file is unreadable or holds no certificate.
    """
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the certificate file {path}: {exc.strerror}") from None
        try:
            if b"-----BEGIN" in data:
                certificates.extend(x509.load_pem_x509_certificates(data))
            else:
                certificates.append(x509.load_der_x509_certificate(data))
        except ValueError:
            raise ConfigError(f"{path} is not a PEM or DER X.509 certificate") from None
    return certificates
