"""The Celery side without a broker: app configuration, beat schedule, and the task functions called directly.

The tasks run against a real throwaway PostgreSQL database (and SQLite), as warehouse's task tests do: the
task body is called in-process, no worker, no message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from service import keys, sealing
from service.config import Settings
from service.core.formats import utc_now
from service.core.note import Signer
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import db, ledger
from service.storage.codec import to_us
from workers import celery_app, tasks

REDIS = "redis://127.0.0.1:6379/3"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def settings_for(tmp_path: Path, url: str, **kw: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=url,
        broker_url=REDIS,
        signing_key_file=tmp_path / "signing.key",
        **kw,  # type: ignore[arg-type]
    )


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", [REDIS, AMQP, "rediss://h:6380/0", "amqps://u:p@h:5671/vh"])
def test_make_celery_configures_delivery_guarantees_for_each_broker(tmp_path: Path, broker: str) -> None:
    settings = Settings(data_dir=tmp_path, broker_url=broker)
    app = celery_app.make_celery(settings)
    conf = app.conf
    assert conf.broker_url == broker
    assert conf.result_backend is None
    assert conf.task_ignore_result is True
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True
    assert conf.task_default_queue == "evidence"
    # The transport really is the one named by the URL (kombu resolves it lazily: no connection made).
    with app.connection_for_write() as connection:
        assert connection.transport.driver_type == ("redis" if broker.startswith("redis") else "amqp")


def test_make_celery_refuses_settings_without_a_broker(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EVIDENCE_BROKER_URL"):
        celery_app.make_celery(Settings(data_dir=tmp_path))


def test_beat_schedule_runs_seal_pending_at_half_the_batch_age(tmp_path: Path) -> None:
    app = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url=REDIS, batch_max_age=4.0))
    entry = app.conf.beat_schedule["seal-pending"]
    assert entry["task"] == celery_app.SEAL_PENDING
    assert entry["schedule"] == 2.0
    assert entry["options"]["expires"] >= entry["schedule"]


@pytest.mark.parametrize(("age", "interval"), [(0.2, 0.5), (1.0, 0.5), (10.0, 5.0), (600.0, 30.0)])
def test_beat_interval_is_bounded(tmp_path: Path, age: float, interval: float) -> None:
    assert celery_app.beat_interval(Settings(data_dir=tmp_path, batch_max_age=age)) == interval


def test_tasks_are_registered_under_their_names_with_late_acks(tmp_path: Path) -> None:
    app = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url=REDIS), queue="q1")
    app.loader.import_default_modules()
    assert app.conf.task_default_queue == "q1"
    for name in (celery_app.SEAL_PENDING, celery_app.SEAL_NOW):
        task = app.tasks[name]
        assert task.acks_late is True
        assert task.ignore_result is True


def test_module_level_app_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDENCE_BROKER_URL", AMQP)
    monkeypatch.setenv("EVIDENCE_CELERY_QUEUE", "from-env")
    monkeypatch.setattr(celery_app, "_app", None)
    app = celery_app.app
    assert app.conf.broker_url == AMQP
    assert app.conf.task_default_queue == "from-env"
    assert celery_app.app is app  # built once


def test_workers_do_not_import_flask() -> None:
    import subprocess
    import sys

    code = "import sys, workers.celery_app, workers.tasks; print('flask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_retry_delay_grows_and_is_capped() -> None:
    assert 0.375 <= tasks.retry_delay(0) <= 0.625
    assert 3.0 <= tasks.retry_delay(3) <= 5.0
    assert tasks.retry_delay(50) <= 37.5


# --- the task bodies against a real database -------------------------------------------------------


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    db.upgrade(db_url)
    keys.write_signer(tmp_path / "signing.key", Signer.generate("localhost/evidence-ledger"))
    rt = Runtime.from_settings(settings_for(tmp_path, db_url, batch_max_size=7, batch_max_age=3600.0))
    rt.prepare_signing()
    tasks.use_runtime(rt)
    try:
        yield rt
    finally:
        tasks.use_runtime(None)
        rt.engine.dispose()


def _deposit(engine: Engine, n: int) -> tuple[int, list[str]]:
    with engine.begin() as conn:
        tenant = ledger.get_tenant_by_name(conn, "t")
        tenant_id = tenant.id if tenant is not None else ledger.insert_tenant(conn, "t", to_us(utc_now()))
        deposits = sealing.record_evidence(
            conn, tenant_id, [(bytes([i % 256]) * 32, None) for i in range(n)], utc_now()
        )
    return tenant_id, [d.id for d in deposits]


def test_seal_pending_task_seals_full_batches_and_leaves_the_young_remainder(runtime: Runtime) -> None:
    tenant_id, ids = _deposit(runtime.engine, 16)
    sealed = tasks.seal_pending.apply().get()  # eager: the task body in this process
    assert sealed == 14  # two full batches of 7; 2 leaves are younger than batch_max_age
    with runtime.engine.connect() as conn:
        assert ledger.pending_count(conn) == 2
        assert ledger.ledger_size(conn) == 2
        receipt = sealing.receipt_for(conn, tenant_id, ids[0], keys=[runtime.signer.verifier.vkey])
    assert receipt is not None
    result = verify_receipt(receipt, trusted_keys=[runtime.signer.verifier])
    assert result.valid, result.reason


def test_seal_pending_with_nothing_to_do_is_normal(runtime: Runtime) -> None:
    assert tasks.seal_pending.apply().get() == 0
    with runtime.engine.connect() as conn:
        assert ledger.ledger_size(conn) == 0
        assert ledger.checkpoint_at(conn, 0) is not None  # genesis signed at start


def test_seal_now_force_seals_everything_pending(runtime: Runtime) -> None:
    _deposit(runtime.engine, 3)
    assert tasks.seal_now.apply(kwargs={"force": True}).get() == 3
    with runtime.engine.connect() as conn:
        assert ledger.pending_count(conn) == 0
        n_leaves = conn.execute(select(func.count()).select_from(ledger.batch_leaves)).scalar_one()
    assert n_leaves == 3


def test_worker_runtime_loads_the_key_but_never_creates_it(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.upgrade(sqlite_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("EVIDENCE_BROKER_URL", REDIS)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path))
    tasks.use_runtime(None)
    from service.core.errors import ConfigError

    with pytest.raises(ConfigError):
        tasks.get_runtime()
    assert not (tmp_path / "signing.key").exists()
    tasks.use_runtime(None)


def test_timestamp_sweep_is_scheduled_only_when_a_tsa_is_configured(tmp_path: Path) -> None:
    from service.config import TimestampAuthority

    plain = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url=REDIS))
    assert set(plain.conf.beat_schedule) == {"seal-pending", "dispatch-webhooks", "maintain"}
    tsa = (TimestampAuthority("local", "http://127.0.0.1:9/tsa"),)
    with_tsa = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url=REDIS, tsa=tsa))
    assert with_tsa.conf.beat_schedule["timestamp-pending"]["task"] == celery_app.TIMESTAMP_PENDING
    with_tsa.loader.import_default_modules()
    assert celery_app.TIMESTAMP_ENTRY in with_tsa.tasks


# --- packaging: one image, several roles (no Docker engine here: read the files) -----------------------

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, object]:
    import yaml

    document = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _command(service: dict[str, object]) -> str:
    command = service.get("command")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_compose_has_every_role_and_the_api_waits_for_a_migration_it_never_runs() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert {"api", "worker", "beat", "migrate", "postgres", "redis"} <= set(services)
    api, worker, beat, migrate = (services[n] for n in ("api", "worker", "beat", "migrate"))
    assert "service.api:create_app()" in _command(api) and _command(api).startswith("gunicorn")
    assert "migrate" not in _command(api) and "upgrade" not in _command(api)
    assert "celery -A workers.celery_app worker" in _command(worker)
    assert "celery -A workers.celery_app beat" in _command(beat)
    assert "evidence db upgrade" in _command(migrate)
    assert migrate.get("restart") == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["postgres"]
    # The signing key is provisioned (a secret), never created by a process of the deployment.
    for name in ("api", "worker"):
        assert services[name]["secrets"] == ["signing_key"]
        assert services[name]["environment"]["EVIDENCE_SIGNING_KEY_FILE"] == "/run/secrets/signing_key"
        assert services[name]["environment"]["EVIDENCE_BROKER_URL"].startswith("redis://")
    assert "signing_key" in _compose()["secrets"]  # type: ignore[operator]


def test_dockerfile_is_slim_bookworm_with_cjk_fonts_and_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    assert lines[[i for i, x in enumerate(lines) if x.startswith("FROM ")][0]] == "FROM python:3.11-slim-bookworm"
    text = "\n".join(lines)
    assert "fonts-noto-cjk" in text or "fonts-wqy-zenhei" in text
    users = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    cmd = [x for x in lines if x.startswith("CMD ")][-1]
    assert "migrate" not in cmd and "upgrade" not in cmd
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "*.key"} <= set(ignored)


# --- witnesses (SPEC §9) ----------------------------------------------------------------------------


def test_witness_sweep_is_scheduled_only_with_a_policy(tmp_path: Path) -> None:
    from service.core.cosignature import WitnessSigner
    from service.core.policy import parse_policy

    key = WitnessSigner.generate("w.example/witness").verifier.vkey
    policy = parse_policy(f"witness w {key} http://127.0.0.1:9/w\nquorum w\n")
    app = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url=REDIS, witness_policy=policy))
    assert app.conf.beat_schedule["witness-sweep"]["task"] == celery_app.WITNESS_SWEEP
    app.loader.import_default_modules()
    assert {celery_app.WITNESS_CHECKPOINT, celery_app.WITNESS_SWEEP} <= set(app.tasks)
    plain = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url=REDIS))
    assert "witness-sweep" not in plain.conf.beat_schedule


def test_witness_tasks_cosign_with_real_witness_processes(tmp_path: Path, sqlite_url: str) -> None:
    from service.core.policy import parse_policy
    from service.witnessing import receipt_with_cosignatures
    from tests.support.processes import WitnessProcess
    from workers import witness_tasks

    db.upgrade(sqlite_url)
    signer = Signer.generate("localhost/evidence-ledger")
    keys.write_signer(tmp_path / "signing.key", signer)
    procs = [WitnessProcess(tmp_path / f"w{i}", [signer.verifier.vkey], name=f"w{i}.example/w") for i in range(2)]
    policy = parse_policy(
        "".join(f"witness w{i} {p.vkey} {p.url}\n" for i, p in enumerate(procs)) + "group g all w0 w1\nquorum g\n"
    )
    settings = settings_for(tmp_path, sqlite_url, witness_policy=policy, witness_wait=0.0)
    rt = Runtime.from_settings(settings)
    rt.prepare_signing()
    tasks.use_runtime(rt)
    try:
        for p in procs:
            p.start()
        tenant_id, ids = _deposit(rt.engine, 3)
        sealing.seal_pending(rt.engine, rt.signer, max_leaves=10, max_age=0.0, force=True)
        assert witness_tasks.witness_sweep.apply().get() == 2
        with rt.engine.connect() as conn:
            doc = sealing.receipt_for(conn, tenant_id, ids[0])
            assert doc is not None
            doc = receipt_with_cosignatures(conn, settings, doc)
        assert doc is not None
        assert verify_receipt(doc, trusted_keys=[signer.verifier], policy=policy).valid
        assert witness_tasks.witness_shortfall.apply(args=(1,)).get() is False
        procs[1].kill()
        _deposit(rt.engine, 1)
        sealing.seal_pending(rt.engine, rt.signer, max_leaves=10, max_age=0.0, force=True)
        assert witness_tasks.witness_sweep.apply().get() == 1
        assert witness_tasks.witness_shortfall.apply(args=(2,)).get() is True
    finally:
        tasks.use_runtime(None)
        rt.engine.dispose()
        for p in procs:
            p.stop()
