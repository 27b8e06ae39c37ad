"""Certificate PDFs: the first drawing of an evidence's certificate, and a repeat, against drawing every time.

Targets (issue 15): first ≤ 300 ms, repeat ≤ 10 ms (they were 1.2-2.0 s each, every time). Measured in one run,
through the real API route (Flask test client, embedded SQLite, a sealed batch), with CPU time of this process
printed beside wall time because the machine is shared (load average printed):

- baseline: what every request did before: verify, then draw with the full system faces (fpdf2 parses and subsets
  the 65,535-glyph Noto Sans CJK collection face per document; here through ``render_certificate`` with the working
  fonts unavailable);
- first: ``GET /v1/evidence/{id}/certificate.pdf`` for an evidence never drawn (verify, draw with the working fonts,
  store in the certificate cache);
- repeat: the same request again (served from the cache: no verification, no drawing);
- CLI: ``evidence certificate RECEIPT -o FILE.pdf`` as a fresh process (Python start-up and imports included).

    .venv/bin/python bench/bench_certificate.py [--evidence 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service import sealing  # noqa: E402
from service.api import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.core.formats import utc_now  # noqa: E402
from service.core.receipt import dump_json  # noqa: E402
from service.court import fonts as court_fonts  # noqa: E402
from service.court import layout  # noqa: E402
from service.court.certificate import render_certificate  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.storage import db  # noqa: E402
from service.tenants import create_tenant  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def timed(call: object) -> tuple[float, float, object]:
    """(wall ms, CPU ms of this process, result) of ``call()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()  # type: ignore[operator]
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, result


def line(name: str, samples: list[tuple[float, float]]) -> tuple[float, float]:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    print(f"  {name:44} wall {wall:8.1f} ms   CPU {cpu:8.1f} ms   (median of {len(samples)})")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidence", type=int, default=8, help="certificates drawn per measurement")
    args = parser.parse_args()

    full = court_fonts.find_fonts()
    working = court_fonts.working_fonts(full, build="now")  # what scripts/setup does once per machine
    assert working is not None
    print(f"fonts: {full.cjk} (working font: {working.cjk.path.name}, {working.cjk.path.stat().st_size:,} bytes)")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory(prefix="bench-certificate-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        url = f"sqlite:///{data / 'evidence.db'}"
        db.upgrade(url)
        runtime = Runtime.from_settings(Settings(data_dir=data, database_url=url, public_url="https://ledger.example"))
        runtime.prepare_signing()
        client = create_app(runtime=runtime, start_sealer=False).test_client()
        with runtime.engine.begin() as conn:
            key = create_tenant(conn, "bench", utc_now())
        auth = {"Authorization": f"Bearer {key}"}
        ids = []
        for n in range(args.evidence * 2):
            body = {"sha256": hashlib.sha256(b"%d" % n).hexdigest(), "label": f"采购合同-2026-{n:03d}.pdf"}
            response = client.post("/v1/evidence", json=body, headers=auth)
            assert response.status_code == 202, response.get_data(as_text=True)
            ids.append(response.get_json()["id"])
        sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=10_000, max_age=1.0, force=True)

        def get(evidence_id: str) -> bytes:
            response = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth)
            assert response.status_code == 200, response.get_data(as_text=True)
            return response.get_data()

        get(ids[-1])  # warm: imports, font lookup, first connection
        receipts = [client.get(f"/v1/evidence/{i}/receipt", headers=auth).get_json() for i in ids]

        # baseline: the full faces, as every request did before (the working fonts made unavailable)
        baseline = []
        real = layout.working_fonts
        layout.working_fonts = lambda fonts, build="never": None  # type: ignore[assignment]
        try:
            for receipt in receipts[: args.evidence]:
                wall, cpu, _ = timed(
                    lambda r=receipt: render_certificate(
                        r, verify_url="https://ledger.example/verify", label="采购合同.pdf", receipt_json=dump_json(r)
                    )
                )
                baseline.append((wall, cpu))
        finally:
            layout.working_fonts = real

        first, repeat = [], []
        for evidence_id in ids[args.evidence : args.evidence * 2 - 1]:
            wall, cpu, pdf = timed(lambda e=evidence_id: get(e))
            first.append((wall, cpu))
            wall, cpu, again = timed(lambda e=evidence_id: get(e))
            assert again == pdf
            repeat.append((wall, cpu))

        receipt_path = Path(tmp) / "r.json"
        receipt_path.write_bytes(dump_json(receipts[0]))
        cli = []
        for n in range(3):
            out = Path(tmp) / f"c{n}.pdf"
            command = [sys.executable, "-m", "service", "certificate", str(receipt_path), "-o", str(out)]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            cli.append(((time.perf_counter() - started) * 1000, 0.0))
        runtime.engine.dispose()

    print("results:")
    base_wall, base_cpu = line("baseline: draw with the full faces", baseline)
    first_wall, first_cpu = line("first GET (verify, draw, cache)", first)
    rep_wall, rep_cpu = line("repeat GET (from the cache)", repeat)
    cli_wall, _ = line("CLI `evidence certificate` (fresh process)", cli)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"first / baseline: {first_wall / base_wall:.2f} (wall), {first_cpu / base_cpu:.2f} (CPU); "
        f"target first <= 300 ms: {'met' if first_wall <= 300 else 'missed'} wall, "
        f"{'met' if first_cpu <= 300 else 'missed'} CPU"
    )
    print(
        f"repeat / baseline: {rep_wall / base_wall:.4f} (wall); target repeat <= 10 ms: "
        f"{'met' if rep_wall <= 10 else 'missed'} ({rep_wall:.1f} ms); CLI {cli_wall:.0f} ms"
    )


if __name__ == "__main__":
    main()
