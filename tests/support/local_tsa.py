"""A real RFC 3161 Time-Stamp Authority on 127.0.0.1 for tests, built on ``openssl ts -reply``.

It follows the tested recipe in ``shared/notes/rfc3161-local-tsa.md`` (and ``tests/tsa/local_tsa.sh``):
a key, a TSA certificate whose extendedKeyUsage is ``critical, timeStamping`` (RFC 3161 §2.3), an
``openssl.cnf`` with a ``[tsa]`` section and a serial file, all in a temporary directory that is deleted
on close. The key and certificates are made with ``cryptography`` so that tests can also ask for a TSA
certificate issued by a separate root CA, or one that is not valid at the time of signing.

    with LocalTSA() as tsa:
        token = request_token(tsa.url, b"entry bytes")
        verify_token(token, b"entry bytes", load_ca_certificates(tsa.ca_cert_pem))

Nothing here is a stub: every reply is produced and signed by the ``openssl`` binary.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = shutil.which("openssl")
TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
MAX_QUERY_BYTES = 64 * 1024

KeyAlg = Literal["rsa", "ec"]
OutageMode = Literal["503", "refuse", "hang"]
_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _require_openssl() -> str:
    if OPENSSL is None:
        raise RuntimeError("the openssl binary is not on PATH (needed by the local TSA)")
    return OPENSSL


def _new_key(key_alg: KeyAlg) -> _PrivateKey:
    if key_alg == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evidence Ledger tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class LocalTSA:
    """An RFC 3161 TSA answering ``POST application/timestamp-query`` on an ephemeral local port.

    Attributes: ``url``, ``name`` (the TSA certificate's CN), ``ca_cert_pem`` / ``ca_cert_path`` (the
    certificate to trust: the TSA certificate itself, or the separate root with ``with_ca=True``),
    ``tsa_cert_pem``, ``request_count`` (POSTs received, failed ones included).

    Options:
    - ``key_alg``: ``"rsa"`` (RSA-2048, default) or ``"ec"`` (ECDSA P-256);
    - ``with_ca``: the TSA certificate is issued by a separate self-signed root CA;
    - ``policy``: the policy OID put in tokens; ``digests``: the imprint algorithms accepted (others are
      answered with a ``rejection`` reply, as a real TSA does);
    - ``fail_first=N``: answer ``503`` to the first N requests (retry tests);
    - ``valid_from`` / ``valid_until``: the TSA certificate's validity window (default: now-1h, +1 year).
    ``down(mode)`` / ``up()`` simulate an outage: ``"503"`` answers, ``"refuse"`` closes the listening
    socket (connection refused), ``"hang"`` accepts and never answers.
    """

    def __init__(
        self,
        *,
        name: str = "Evidence Ledger Test TSA",
        key_alg: KeyAlg = "rsa",
        with_ca: bool = False,
        policy: str = "1.2.3.4.1",
        digests: Sequence[str] = ("sha256", "sha384", "sha512"),
        fail_first: int = 0,
        valid_from: datetime.datetime | None = None,
        valid_until: datetime.datetime | None = None,
    ) -> None:
        self._openssl = _require_openssl()
        self.name = name
        self.policy = policy
        self._fail_remaining = fail_first
        self._tmp = tempfile.TemporaryDirectory(prefix="local-tsa-")
        self.dir = Path(self._tmp.name)
        self._reply_lock = threading.Lock()  # openssl ts -reply reads and rewrites the serial file
        self._state_lock = threading.Lock()
        self._outage: OutageMode | None = None
        self._release_hung = threading.Event()
        self._query_counter = 0
        self.request_count = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._make_pki(key_alg, with_ca, valid_from, valid_until)
        self._write_config(digests)

    # --- PKI and openssl.cnf ---------------------------------------------------------------------

    def _make_pki(
        self,
        key_alg: KeyAlg,
        with_ca: bool,
        valid_from: datetime.datetime | None,
        valid_until: datetime.datetime | None,
    ) -> None:
        now = datetime.datetime.now(datetime.UTC)
        not_before = valid_from or now - datetime.timedelta(hours=1)
        not_after = valid_until or now + datetime.timedelta(days=365)
        tsa_key = _new_key(key_alg)
        subject = _name(self.name)
        if with_ca:
            ca_key: _PrivateKey = _new_key(key_alg)
            ca_name = _name(self.name + " Root CA")
            ca_cert = (
                x509.CertificateBuilder()
                .subject_name(ca_name)
                .issuer_name(ca_name)
                .public_key(ca_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=False,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            issuer_name, signing_key = ca_name, ca_key
        else:
            issuer_name, signing_key = subject, tsa_key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(tsa_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # RFC 3161 §2.3: exactly one EKU, id-kp-timeStamping, and the extension MUST be critical.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        )
        tsa_cert = builder.sign(signing_key, hashes.SHA256())
        key_path = self.dir / "tsa.key"
        key_path.write_bytes(
            tsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        self.tsa_cert_pem = _pem_cert(tsa_cert)
        (self.dir / "tsa.crt").write_bytes(self.tsa_cert_pem)
        self.ca_cert_pem = _pem_cert(ca_cert) if with_ca else self.tsa_cert_pem
        self.ca_cert_path = self.dir / "ca.pem"
        self.ca_cert_path.write_bytes(self.ca_cert_pem)
        # openssl increments the serial before use: "00" gives serial 1 in the first reply.
        (self.dir / "tsaserial").write_text("00\n")

    def _write_config(self, digests: Sequence[str]) -> None:
        self.config_path = self.dir / "openssl.cnf"
        self.config_path.write_text(
            f"""\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir               = {self.dir}
serial            = $dir/tsaserial
crypto_device     = builtin
signer_cert       = $dir/tsa.crt
certs             = $dir/tsa.crt
signer_key        = $dir/tsa.key
signer_digest     = sha256
default_policy    = {self.policy}
digests           = {", ".join(digests)}
accuracy          = secs:1
ordering          = no
tsa_name          = yes
ess_cert_id_chain = no
ess_cert_id_alg   = sha256
"""
        )

    # --- answering queries -----------------------------------------------------------------------

    def answer(self, query_der: bytes) -> bytes:
        """Answer one DER TimeStampReq with a DER TimeStampResp, as ``openssl ts -reply`` makes it.

        A query for an algorithm not in ``digests`` gets a ``rejection`` reply (openssl exits 0).
        Raises ``ValueError`` if openssl cannot produce a reply at all (e.g. the query is not DER).
        """
        with self._state_lock:
            self._query_counter += 1
            n = self._query_counter
        query = self.dir / f"query-{n}.tsq"
        reply = self.dir / f"reply-{n}.tsr"
        query.write_bytes(query_der)
        try:
            with self._reply_lock:
                proc = subprocess.run(
                    [
                        self._openssl,
                        "ts",
                        "-reply",
                        "-config",
                        str(self.config_path),
                        "-section",
                        "tsa_config1",
                        "-queryfile",
                        str(query),
                        "-out",
                        str(reply),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            if proc.returncode != 0 or not reply.exists():
                raise ValueError(f"openssl ts -reply failed (exit {proc.returncode}): {proc.stderr.strip()}")
            return reply.read_bytes()
        finally:
            query.unlink(missing_ok=True)
            reply.unlink(missing_ok=True)

    # --- HTTP server -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port == 0:
            raise RuntimeError("the local TSA is not started (use it as a context manager)")
        return f"http://127.0.0.1:{self._port}/tsa"

    def start(self) -> LocalTSA:
        self._serve(self._port)
        return self

    def _serve(self, port: int) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-tsa", daemon=True
        )
        self._thread.start()

    def _stop_server(self) -> None:
        self._release_hung.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def down(self, mode: OutageMode = "503") -> None:
        """Simulate an outage until ``up()``: 503 answers, a closed port, or accepted-but-silent."""
        self._outage = mode
        if mode == "refuse":
            self._stop_server()
        else:
            self._release_hung.clear()

    def up(self) -> None:
        """End an outage started by ``down()`` (reopens the same port after ``"refuse"``)."""
        mode, self._outage = self._outage, None
        self._release_hung.set()
        if mode == "refuse":
            self._serve(self._port)

    def close(self) -> None:
        self._stop_server()
        self._tmp.cleanup()

    def __enter__(self) -> LocalTSA:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _take_failure(self) -> bool:
        with self._state_lock:
            self.request_count += 1
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return True
            return False


def _make_handler(tsa: LocalTSA) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            injected_failure = tsa._take_failure()
            if tsa._outage == "hang":
                tsa._release_hung.wait(timeout=60)
                self.close_connection = True
                return
            if injected_failure or tsa._outage == "503":
                self._send(503, "text/plain", b"local TSA: temporarily unavailable\n")
                return
            if self.headers.get_content_type() != TIMESTAMP_QUERY:
                self._send(415, "text/plain", f"expected {TIMESTAMP_QUERY}\n".encode())
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_QUERY_BYTES:
                self._send(400, "text/plain", b"bad Content-Length\n")
                return
            query = self.rfile.read(length)
            try:
                reply = tsa.answer(query)
            except ValueError as e:
                self._send(400, "text/plain", f"{e}\n".encode())
                return
            self._send(200, TIMESTAMP_REPLY, reply)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep test output quiet

    return Handler


def openssl_verify(token_der: bytes, message: bytes, ca_path: Path | str) -> bool:
    """Independent check: ``openssl ts -verify -digest HEX -in token.der -token_in -CAfile ca.pem``.

    True iff openssl says "Verification: OK" for a token over SHA-256(``message``).
    """
    openssl = _require_openssl()
    with tempfile.TemporaryDirectory(prefix="tsa-verify-") as tmp:
        token_path = Path(tmp) / "token.der"
        token_path.write_bytes(token_der)
        proc = subprocess.run(
            [
                openssl,
                "ts",
                "-verify",
                "-digest",
                hashlib.sha256(message).hexdigest(),
                "-in",
                str(token_path),
                "-token_in",
                "-CAfile",
                str(ca_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    return proc.returncode == 0 and "Verification: OK" in proc.stdout
