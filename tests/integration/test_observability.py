"""service.metrics and service.logs on a bare Flask app (through service.api.observability, as create_app does)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from service import logs, metrics, sealing
from service.api import observability
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.sealing import SealResult
from service.storage import db, ledger
from service.storage.codec import to_us


@pytest.fixture
def runtime(sqlite_url: str, tmp_path: Path) -> Iterator[Runtime]:
    db.upgrade(sqlite_url)
    rt = Runtime.from_settings(Settings(data_dir=tmp_path, database_url=sqlite_url))
    try:
        yield rt
    finally:
        rt.engine.dispose()


def scrape(app: Flask) -> dict[str, float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return values


def test_metrics_endpoint_reads_pending_depth_and_ledger_size_from_the_database(runtime: Runtime) -> None:
    app = Flask(__name__)
    observability.init_metrics(app, runtime)
    before = scrape(app)
    assert before["evidence_pending"] == 0
    assert before["evidence_ledger_size"] == 0
    assert before["evidence_database_up"] == 1
    with runtime.engine.begin() as conn:
        tenant = ledger.insert_tenant(conn, "t", to_us(utc_now()))
        sealing.record_evidence(conn, tenant, [(b"\x01" * 32, None)] * 5, utc_now())
    assert scrape(app)["evidence_pending"] == 5


def test_metrics_count_submissions_batches_latency_and_http_errors(runtime: Runtime) -> None:
    app = Flask(__name__)
    observability.init_metrics(app, runtime)
    before = scrape(app)
    metrics.record_submissions("digest", 3)
    now = utc_now()
    result = SealResult(0, 42, b"\0" * 32, now, 1, b"\0" * 32, now - timedelta(seconds=2))
    metrics.observe_batches([result])
    app.test_client().get("/no-such-page")
    after = scrape(app)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("evidence_submissions_total{kind=digest}") == 3
    assert delta("evidence_batch_size_count") == 1
    assert delta("evidence_batch_size_sum") == 42
    assert delta("evidence_seal_latency_seconds_sum") == pytest.approx(2.0)
    assert delta("evidence_errors_total{kind=http_4xx}") == 1


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    env_dir = tmp_path / "prom"
    env_dir.mkdir()
    bump = "from service import metrics; metrics.record_submissions('file', 2)"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(env_dir), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", bump], env=env, check=True, cwd=Path(__file__).parents[2])
    show = "from service import metrics; import sys; sys.stdout.write(metrics.render(None).decode())"
    out = subprocess.run(
        [sys.executable, "-c", show], env=env, check=True, capture_output=True, text=True, cwd=Path(__file__).parents[2]
    ).stdout
    assert 'evidence_submissions_total{kind="file"} 4.0' in out


def test_request_id_is_echoed_generated_or_replaced_and_logged(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure_logging(Settings(data_dir=tmp_path, log_json=True))
    try:
        app = Flask(__name__)
        observability.init_logging(app)

        @app.get("/hello")
        def hello() -> str:
            logging.getLogger("test").info("hello from the view")
            return "hi"

        client = app.test_client()
        assert client.get("/hello", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
        generated = client.get("/hello").headers["X-Request-ID"]
        assert len(generated) == 32 and int(generated, 16) >= 0
        replaced = client.get("/hello", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
        assert replaced != "bad id\twith spaces" and len(replaced) == 32
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
        ids = [x["request_id"] for x in lines if x.get("message") == "hello from the view"]
        assert ids == ["abc-123", generated, replaced]
        assert all(x["level"] == "INFO" and "time" in x for x in lines)
        assert logs.current_request_id() is None  # reset after each request
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_evidence", False)]:
            root.removeHandler(h)


def test_http_requests_are_counted_per_method_endpoint_and_status_class(runtime: Runtime) -> None:
    """The counter of each (method, endpoint, status class) is resolved once and then reused: every request still
    counts in its own series, and a path no route matches counts as endpoint ``unmatched``."""
    app = Flask(__name__)
    observability.init_metrics(app, runtime)

    @app.get("/hello")
    def hello() -> str:
        return "hi"

    before = scrape(app)
    for _ in range(3):
        app.test_client().get("/hello")
    app.test_client().post("/hello")  # 405: no POST route, counted under the endpoint werkzeug matched for GET
    app.test_client().get("/nowhere")
    after = scrape(app)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("evidence_http_requests_total{endpoint=hello,method=GET,status=2xx}") == 3
    assert delta("evidence_http_requests_total{endpoint=unmatched,method=GET,status=4xx}") == 1
    assert delta("evidence_http_requests_total{endpoint=unmatched,method=POST,status=4xx}") == 1
    assert delta("evidence_errors_total{kind=http_4xx}") == 2
