"""Settings of one Evidence Ledger deployment, read once from the environment.

Owns: the ``Settings`` frozen dataclass (every knob the service has, with its documented default) and
``Settings.from_env``, the only place that reads environment variables. Entry points (``evidence serve``,
gunicorn's app factory, the Celery worker, Alembic's ``env.py``) call ``from_env``; tests build
``Settings(...)`` directly. Flask's own configuration holds only Flask's keys, never these.

Must not import: Flask, SQLAlchemy, Celery (``service.core.verify`` reads no settings at all).

Environment variables (an empty value counts as unset), with their defaults:

- ``EVIDENCE_DATA_DIR``: directory of the embedded database and the signing key. Default
  ``./evidence-data``, relative to the working directory at start-up (made absolute).
- ``DATABASE_URL``: SQLAlchemy URL, ``sqlite:///PATH`` or ``postgresql://...``.
  Default ``sqlite:///<data dir>/evidence.db``.
- ``EVIDENCE_ORIGIN``: checkpoint origin and signing key name (SPEC §4).
  Default ``localhost/evidence-ledger``.
- ``EVIDENCE_PUBLIC_URL``: base URL used in links and QR codes. Default ``http://127.0.0.1:8000``.
- ``EVIDENCE_BATCH_MAX_SIZE``: most leaves in one batch. Default 10000.
- ``EVIDENCE_BATCH_MAX_AGE``: seconds (float) the oldest pending leaf may wait before sealing. Default 1.0.
- ``EVIDENCE_MAX_UPLOAD_BYTES``: largest accepted upload body. Default 4 GiB.
- ``EVIDENCE_SIGNING_KEY_FILE``: signer key file (SPEC §4, mode 0600). Default ``<data dir>/signing.key``.
- ``EVIDENCE_SM2_KEY_FILE``: SM2 signing key, PKCS#8 PEM, mode 0600 (SPEC §4.1). When the file exists, every
  checkpoint is also signed with SM2. Default ``signing-sm2.pem`` beside the signing key file.
- ``EVIDENCE_SM2_ID``: the SM2 distinguishing ID, 1-255 printable ASCII characters. Default ``1234567812345678``.
- ``EVIDENCE_UPLOAD_SM3``: ``1/true/yes/on`` or ``0/false/no/off``: uploads are hashed with SM3 beside SHA-256 (one
  pass; the deposit's v2 leaf binds the SM3). Default true. SM3 runs at about a quarter of SHA-NI SHA-256
  (bench/bench_sm3.py), so a deployment that never needs SM3 may turn it off.
- ``EVIDENCE_BROKER_URL``: Celery broker (``redis://...`` or ``amqp://...``).
  Unset: embedded, batches sealed in-process.
- ``EVIDENCE_REDIS_URL``: Redis for rate limits. Unset: limits kept in process memory.
- ``EVIDENCE_TSA``: zero or more ``name=url`` RFC 3161 authorities, separated by whitespace or commas.
- ``EVIDENCE_TSA_CA_FILES``: PEM files of trusted TSA roots, separated by whitespace or commas.
- ``EVIDENCE_DEPOSITOR_CA_FILES``: PEM files of the CA certificates trusted for X.509 depositor attestations
  (SPEC §2.2), separated by whitespace or commas. Unset: X.509 attestations are refused (bare keys still work).
- ``EVIDENCE_LOCAL_TZ``: IANA zone for human-facing times (certificates). Default ``Asia/Shanghai``.
- ``EVIDENCE_IDEMPOTENCY_TTL``: seconds an ``Idempotency-Key`` is kept (at least 24 h). Default 172800.
- ``EVIDENCE_RATE_LIMIT``: requests per second per API key (float); 0 turns limiting off. Default 100.
- ``EVIDENCE_LOG_JSON``: ``1/true/yes/on`` or ``0/false/no/off``: JSON log lines. Default false.
- ``EVIDENCE_CHECK_RATE_LIMIT``: public checks (``POST /v1/check``) per second per client address (float, bursts
  of 10); 0 turns limiting off. Default 0.5.
- ``EVIDENCE_DOWNLOAD_DIR``: the wheels ``GET /download/`` serves (built by ``scripts/build-download``).
  Default ``build/download`` of the source tree the service runs from.
- ``EVIDENCE_WITNESS_POLICY``: a C2SP tlog-policy file (SPEC §9): the witnesses to ask after each seal (every
  ``witness`` line needs its http(s) URL) and the quorum receipts wait for. Unset: no witnesses.
- ``EVIDENCE_WITNESS_WAIT``: seconds receipts wait for the witness quorum after a seal before they are served with
  the cosignatures there are. Default 10.
- ``EVIDENCE_WITNESS_TIMEOUT``: seconds one request to a witness may take. Default 5.
- ``EVIDENCE_CERTIFICATE_CACHE_DIR``: folder of rendered certificate PDFs (drawn once per evidence and checkpoint),
  or ``off``. Default ``<data dir>/cache/certificates``.
- ``EVIDENCE_CERTIFICATE_CACHE_MB``: most megabytes that folder may hold (least recently served go first).
  Default 256.
- ``EVIDENCE_CERTIFICATE_RENDERS``: certificates one API process draws at once; a request over it gets ``503``
  with ``Retry-After`` (a cached certificate is always served). Default 1.
- ``EVIDENCE_WEBHOOK_ALLOW_NETWORKS``: IP networks (``10.1.0.0/16 fd00::/8``, whitespace or commas) that webhooks
  may reach although they are not public. Default: none (webhooks reach global unicast addresses only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.core.errors import ConfigError, FormatError
from service.core.policy import Policy, parse_policy

__all__ = ["DEFAULT_DATA_DIR", "Settings", "TimestampAuthority"]

DEFAULT_DATA_DIR = Path("evidence-data")
# scripts/setup builds the verifier wheels here (beside service/ in the source tree; gitignored).
DEFAULT_DOWNLOAD_DIR = Path(__file__).resolve().parents[1] / "build" / "download"
MIN_IDEMPOTENCY_TTL = 24 * 3600  # SPEC §7: "kept at least 24 h"

_SEPARATORS = re.compile(r"[\s,]+")
# A key name in a C2SP note: non-empty, no whitespace, no '+' (the vkey separator).
_ORIGIN = re.compile(r"[^\s+]+")
_TSA_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

T = TypeVar("T")


@dataclass(frozen=True)
class TimestampAuthority:
    """One RFC 3161 Time-Stamp Authority: a short name (shown in receipts' statements) and its URL."""

    name: str
    url: str


@dataclass(frozen=True)
class Settings:
    """Every setting of the service. Defaults are the embedded single-machine deployment.

    ``database_url`` and ``signing_key_file`` left empty are derived from ``data_dir`` (see the module
    docstring), so after construction they always hold a usable value.
    """

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    origin: str = "localhost/evidence-ledger"
    public_url: str = "http://127.0.0.1:8000"
    batch_max_size: int = 10_000
    batch_max_age: float = 1.0
    max_upload_bytes: int = 4 * 1024**3
    signing_key_file: Path = field(default=Path(""))
    sm2_key_file: Path = field(default=Path(""))
    sm2_id: str = "1234567812345678"
    upload_sm3: bool = True
    broker_url: str | None = None
    redis_url: str | None = None
    tsa: tuple[TimestampAuthority, ...] = ()
    tsa_ca_files: tuple[Path, ...] = ()
    depositor_ca_files: tuple[Path, ...] = ()
    local_tz: str = "Asia/Shanghai"
    idempotency_ttl: int = 2 * 86_400
    rate_limit: float = 100.0
    log_json: bool = False
    download_dir: Path = DEFAULT_DOWNLOAD_DIR
    check_rate_limit: float = 0.5
    witness_policy: Policy | None = None
    witness_wait: float = 10.0
    witness_timeout: float = 5.0
    certificate_cache_dir: Path | None = field(default=Path(""))  # None: no cache; Path(""): <data dir>/cache/...
    certificate_cache_mb: int = 256
    certificate_renders: int = 1
    webhook_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def __post_init__(self) -> None:
        # frozen: derived defaults are filled in through object.__setattr__, once, here.
        data_dir = Path(self.data_dir).expanduser().absolute()
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'evidence.db'}")
        if self.signing_key_file == Path(""):
            object.__setattr__(self, "signing_key_file", data_dir / "signing.key")
        if self.sm2_key_file == Path(""):
            object.__setattr__(self, "sm2_key_file", Path(self.signing_key_file).with_name("signing-sm2.pem"))
        _sm2_id(self.sm2_id)  # raises ValueError for a bad ID given in code
        if self.certificate_cache_dir == Path(""):
            object.__setattr__(self, "certificate_cache_dir", data_dir / "cache" / "certificates")

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: batches are sealed in-process by the web server."""
        return self.broker_url is None

    @property
    def tzinfo(self) -> ZoneInfo:
        """The ``local_tz`` zone (human-facing times only; every stored and signed time is UTC)."""
        return ZoneInfo(self.local_tz)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build the settings from ``environ`` (normally ``os.environ``).

        :raise ConfigError: listing every invalid variable at once, each with the value found.
        """
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        def parse(name: str, convert: Callable[[str], T], default: T) -> T:
            raw = get(name)
            if raw is None:
                return default
            try:
                return convert(raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc} (found {raw!r})")
                return default

        data_dir = Path(get("EVIDENCE_DATA_DIR") or DEFAULT_DATA_DIR)
        database_url = parse("DATABASE_URL", _database_url, "")
        origin = parse("EVIDENCE_ORIGIN", _origin, cls.origin)
        public_url = parse("EVIDENCE_PUBLIC_URL", _http_url, cls.public_url)
        batch_max_size = parse("EVIDENCE_BATCH_MAX_SIZE", _positive_int, cls.batch_max_size)
        batch_max_age = parse("EVIDENCE_BATCH_MAX_AGE", _positive_float, cls.batch_max_age)
        max_upload_bytes = parse("EVIDENCE_MAX_UPLOAD_BYTES", _positive_int, cls.max_upload_bytes)
        key_file = get("EVIDENCE_SIGNING_KEY_FILE")
        sm2_key_file = get("EVIDENCE_SM2_KEY_FILE")
        sm2_id = parse("EVIDENCE_SM2_ID", _sm2_id, cls.sm2_id)
        upload_sm3 = parse("EVIDENCE_UPLOAD_SM3", _bool, cls.upload_sm3)
        broker_url = parse("EVIDENCE_BROKER_URL", _broker_url, None)
        redis_url = parse("EVIDENCE_REDIS_URL", _redis_url, None)
        no_tsa: tuple[TimestampAuthority, ...] = ()
        tsa = parse("EVIDENCE_TSA", _tsa_list, no_tsa)
        tsa_ca_files = tuple(Path(p) for p in _split(get("EVIDENCE_TSA_CA_FILES") or ""))
        depositor_ca_files = tuple(Path(p) for p in _split(get("EVIDENCE_DEPOSITOR_CA_FILES") or ""))
        local_tz = parse("EVIDENCE_LOCAL_TZ", _zone, cls.local_tz)
        idempotency_ttl = parse("EVIDENCE_IDEMPOTENCY_TTL", _ttl, cls.idempotency_ttl)
        rate_limit = parse("EVIDENCE_RATE_LIMIT", _non_negative_float, cls.rate_limit)
        log_json = parse("EVIDENCE_LOG_JSON", _bool, cls.log_json)
        check_rate_limit = parse("EVIDENCE_CHECK_RATE_LIMIT", _non_negative_float, cls.check_rate_limit)
        download_dir = Path(get("EVIDENCE_DOWNLOAD_DIR") or DEFAULT_DOWNLOAD_DIR).expanduser().absolute()
        witness_policy = parse("EVIDENCE_WITNESS_POLICY", _witness_policy, None)
        witness_wait = parse("EVIDENCE_WITNESS_WAIT", _non_negative_float, cls.witness_wait)
        witness_timeout = parse("EVIDENCE_WITNESS_TIMEOUT", _positive_float, cls.witness_timeout)
        cache_dir_raw = get("EVIDENCE_CERTIFICATE_CACHE_DIR")
        cache_dir: Path | None = Path("")
        if cache_dir_raw is not None:
            cache_dir = None if cache_dir_raw.strip().lower() == "off" else Path(cache_dir_raw).expanduser()
        certificate_cache_mb = parse("EVIDENCE_CERTIFICATE_CACHE_MB", _positive_int, cls.certificate_cache_mb)
        certificate_renders = parse("EVIDENCE_CERTIFICATE_RENDERS", _positive_int, cls.certificate_renders)
        no_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
        webhook_allow_networks = parse("EVIDENCE_WEBHOOK_ALLOW_NETWORKS", _networks, no_networks)

        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            origin=origin,
            public_url=public_url,
            batch_max_size=batch_max_size,
            batch_max_age=batch_max_age,
            max_upload_bytes=max_upload_bytes,
            signing_key_file=Path(key_file).expanduser() if key_file else Path(""),
            sm2_key_file=Path(sm2_key_file).expanduser() if sm2_key_file else Path(""),
            sm2_id=sm2_id,
            upload_sm3=upload_sm3,
            broker_url=broker_url,
            redis_url=redis_url,
            tsa=tsa,
            tsa_ca_files=tsa_ca_files,
            depositor_ca_files=depositor_ca_files,
            local_tz=local_tz,
            idempotency_ttl=idempotency_ttl,
            rate_limit=rate_limit,
            log_json=log_json,
            download_dir=download_dir,
            check_rate_limit=check_rate_limit,
            witness_policy=witness_policy,
            witness_wait=witness_wait,
            witness_timeout=witness_timeout,
            certificate_cache_dir=cache_dir,
            certificate_cache_mb=certificate_cache_mb,
            certificate_renders=certificate_renders,
            webhook_allow_networks=webhook_allow_networks,
        )


# --- converters: each raises ValueError with a message that says what was expected ---------------


def _split(raw: str) -> list[str]:
    return [part for part in _SEPARATORS.split(raw) if part]


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("expected a positive integer") from None
    if value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number")
    return value


def _positive_float(raw: str) -> float:
    value = _float(raw)
    if value <= 0:
        raise ValueError("expected a number of seconds greater than 0")
    return value


def _non_negative_float(raw: str) -> float:
    value = _float(raw)
    if value < 0:
        raise ValueError("expected a number >= 0 (0 turns it off)")
    return value


def _ttl(raw: str) -> int:
    value = _positive_int(raw)
    if value < MIN_IDEMPOTENCY_TTL:
        raise ValueError(f"expected at least {MIN_IDEMPOTENCY_TTL} seconds (24 h, SPEC §7)")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of 1/true/yes/on or 0/false/no/off")


def _sm2_id(raw: str) -> str:
    if not (1 <= len(raw) <= 255 and all("!" <= c <= "~" for c in raw)):
        raise ValueError("expected an SM2 distinguishing ID of 1 to 255 printable ASCII characters without spaces")
    return raw


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in _split(raw):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"expected IP networks such as 10.1.0.0/16 or fd00::/8; bad item {item!r}") from None
    return tuple(networks)


def _origin(raw: str) -> str:
    if not _ORIGIN.fullmatch(raw):
        raise ValueError("expected a key name without spaces or '+'")
    return raw


def _url(raw: str, schemes: tuple[str, ...], what: str) -> str:
    try:
        parts = urlsplit(raw)
    except ValueError:
        raise ValueError(f"expected a {what} URL") from None
    if parts.scheme not in schemes:
        raise ValueError(f"expected a {what} URL with scheme {' or '.join(schemes)}")
    return raw


def _http_url(raw: str) -> str:
    url = _url(raw, ("http", "https"), "http(s)")
    if not urlsplit(url).netloc:
        raise ValueError("expected an http(s) URL with a host")
    return url.rstrip("/")


def _database_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme.split("+", 1)[0] not in ("sqlite", "postgresql", "postgres"):
        raise ValueError("expected sqlite:///PATH or postgresql://...")
    if scheme.split("+", 1)[0] == "postgres":
        # Heroku-style URLs; SQLAlchemy only knows the long name.
        raw = "postgresql" + raw[len("postgres") :]
    return raw


def _broker_url(raw: str) -> str:
    return _url(raw, ("redis", "rediss", "amqp", "amqps", "pyamqp"), "Celery broker")


def _redis_url(raw: str) -> str:
    return _url(raw, ("redis", "rediss", "unix"), "Redis")


def _zone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone name such as Asia/Shanghai") from None
    return raw


def _tsa_list(raw: str) -> tuple[TimestampAuthority, ...]:
    authorities: list[TimestampAuthority] = []
    for item in _split(raw):
        name, sep, url = item.partition("=")
        if not sep or not _TSA_NAME.fullmatch(name):
            raise ValueError(f"expected name=url items, name of [A-Za-z0-9_.-]; bad item {item!r}")
        _http_url(url)
        if any(a.name == name for a in authorities):
            raise ValueError(f"TSA name {name!r} given twice")
        authorities.append(TimestampAuthority(name=name, url=url))
    return tuple(authorities)


def _witness_policy(raw: str) -> Policy:
    """Read and parse the tlog-policy file at ``raw``; every witness needs an http(s) URL to be asked."""
    try:
        data = Path(raw).expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the policy file: {exc.strerror}") from None
    try:
        policy = parse_policy(data)
    except FormatError as exc:
        raise ValueError(exc.reason) from None
    for w in policy.witnesses:
        if w.url is None:
            raise ValueError(f"witness {w.name!r} has no URL: the service cannot ask it to cosign")
        try:
            _http_url(w.url)
        except ValueError:
            raise ValueError(f"witness {w.name!r}: its URL {w.url!r} is not an http(s) URL with a host") from None
    return policy
