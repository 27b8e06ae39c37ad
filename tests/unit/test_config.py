from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings, TimestampAuthority
from service.core.errors import ConfigError


def test_defaults_are_the_embedded_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.data_dir == tmp_path / "evidence-data"
    assert settings.database_url == f"sqlite:///{tmp_path}/evidence-data/evidence.db"
    assert settings.signing_key_file == tmp_path / "evidence-data" / "signing.key"
    assert settings.origin == "localhost/evidence-ledger"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.batch_max_size == 10_000
    assert settings.batch_max_age == 1.0
    assert settings.max_upload_bytes == 4 * 1024**3
    assert settings.broker_url is None and settings.embedded
    assert settings.redis_url is None
    assert settings.tsa == () and settings.tsa_ca_files == ()
    assert settings.local_tz == "Asia/Shanghai"
    assert settings.idempotency_ttl == 172_800
    assert settings.rate_limit == 100.0
    assert settings.log_json is False


def test_direct_construction_derives_paths_from_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.database_url == f"sqlite:///{tmp_path}/d/evidence.db"
    assert settings.signing_key_file == tmp_path / "d" / "signing.key"


def test_every_variable_is_read(tmp_path: Path) -> None:
    environ = {
        "EVIDENCE_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "postgresql://app@db.example:5432/evidence",
        "EVIDENCE_ORIGIN": "ledger.example.cn/evidence",
        "EVIDENCE_PUBLIC_URL": "https://ledger.example.cn/",
        "EVIDENCE_BATCH_MAX_SIZE": "500",
        "EVIDENCE_BATCH_MAX_AGE": "0.25",
        "EVIDENCE_MAX_UPLOAD_BYTES": "1048576",
        "EVIDENCE_SIGNING_KEY_FILE": str(tmp_path / "k.key"),
        "EVIDENCE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "EVIDENCE_REDIS_URL": "redis://127.0.0.1:6379/1",
        "EVIDENCE_TSA": "freetsa=https://freetsa.org/tsr, local=http://127.0.0.1:3180/tsa",
        "EVIDENCE_TSA_CA_FILES": "/etc/tsa/a.pem /etc/tsa/b.pem",
        "EVIDENCE_LOCAL_TZ": "Europe/Paris",
        "EVIDENCE_IDEMPOTENCY_TTL": "86400",
        "EVIDENCE_RATE_LIMIT": "0",
        "EVIDENCE_LOG_JSON": "yes",
    }
    s = Settings.from_env(environ)
    assert s.data_dir == tmp_path / "data"
    assert s.database_url == "postgresql://app@db.example:5432/evidence"
    assert s.origin == "ledger.example.cn/evidence"
    assert s.public_url == "https://ledger.example.cn"
    assert (s.batch_max_size, s.batch_max_age, s.max_upload_bytes) == (500, 0.25, 1_048_576)
    assert s.signing_key_file == tmp_path / "k.key"
    assert s.broker_url == "amqp://guest:guest@127.0.0.1:5672//" and not s.embedded
    assert s.redis_url == "redis://127.0.0.1:6379/1"
    assert s.tsa == (
        TimestampAuthority("freetsa", "https://freetsa.org/tsr"),
        TimestampAuthority("local", "http://127.0.0.1:3180/tsa"),
    )
    assert s.tsa_ca_files == (Path("/etc/tsa/a.pem"), Path("/etc/tsa/b.pem"))
    assert s.local_tz == "Europe/Paris" and s.tzinfo.key == "Europe/Paris"
    assert s.idempotency_ttl == 86_400
    assert s.rate_limit == 0.0
    assert s.log_json is True


def test_empty_values_count_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"DATABASE_URL": "", "EVIDENCE_BROKER_URL": " ", "EVIDENCE_BATCH_MAX_SIZE": ""})
    assert s.database_url.startswith("sqlite:///") and s.embedded and s.batch_max_size == 10_000


def test_postgres_scheme_alias_is_normalised() -> None:
    s = Settings.from_env({"DATABASE_URL": "postgres://u@h/d"})
    assert s.database_url == "postgresql://u@h/d"


def test_all_problems_are_reported_at_once() -> None:
    environ = {
        "DATABASE_URL": "mysql://x",
        "EVIDENCE_ORIGIN": "has space",
        "EVIDENCE_PUBLIC_URL": "ftp://x",
        "EVIDENCE_BATCH_MAX_SIZE": "0",
        "EVIDENCE_BATCH_MAX_AGE": "soon",
        "EVIDENCE_MAX_UPLOAD_BYTES": "-1",
        "EVIDENCE_BROKER_URL": "kafka://x",
        "EVIDENCE_REDIS_URL": "http://x",
        "EVIDENCE_TSA": "no-equals-sign",
        "EVIDENCE_LOCAL_TZ": "Mars/Olympus",
        "EVIDENCE_IDEMPOTENCY_TTL": "60",
        "EVIDENCE_RATE_LIMIT": "-5",
        "EVIDENCE_LOG_JSON": "maybe",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environ)
    message = str(info.value)
    for name, value in environ.items():
        assert f"{name}:" in message, name
        assert repr(value) in message, name


@pytest.mark.parametrize(
    "value",
    ["a=http://x a=http://y", "bad name=http://x", "t=ftp://x", "t="],
)
def test_bad_tsa_lists_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match="EVIDENCE_TSA"):
        Settings.from_env({"EVIDENCE_TSA": value})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.origin = "other"  # type: ignore[misc]


def test_webhook_allow_networks() -> None:
    import ipaddress

    assert Settings.from_env({}).webhook_allow_networks == ()
    s = Settings.from_env({"EVIDENCE_WEBHOOK_ALLOW_NETWORKS": "10.20.0.0/16, fd00:1::/64 127.0.0.1"})
    assert s.webhook_allow_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd00:1::/64"),
        ipaddress.ip_network("127.0.0.1/32"),
    )
    with pytest.raises(ConfigError, match="EVIDENCE_WEBHOOK_ALLOW_NETWORKS.*bad item 'intranet'"):
        Settings.from_env({"EVIDENCE_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/8 intranet"})
