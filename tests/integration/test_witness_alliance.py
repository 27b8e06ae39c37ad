"""The whole alliance as real processes on 127.0.0.1 (SPEC §9): ``evidence serve`` with EVIDENCE_WITNESS_POLICY
and three ``evidence witness serve``. Every receipt's checkpoint carries their cosignatures and verifies with the
policy; a witness killed with SIGKILL delays nothing while the quorum holds; below the quorum receipts wait at most
EVIDENCE_WITNESS_WAIT, then come with what there is (a metric and a log line); witnesses brought back catch up; a
forked checkpoint signed with the operator's own key is refused by every witness."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.cosignature import WitnessKey, check_cosignatures
from service.core.formats import Checkpoint
from service.core.note import Signer, sign_note
from service.core.tlog_witness import AddCheckpoint
from tests.support.processes import ServeProcess, WitnessProcess, evidence, free_port, http

pytestmark = pytest.mark.slow

WAIT = 3.0


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.witnesses: list[WitnessProcess] = []
        names = ["court", "notary", "partner"]
        # Witness keys first (the policy names them), then the service (its key is made on first start), then the
        # witnesses, told the service's key.
        keys = []
        for name in names:
            data = tmp_path / name
            run = evidence("witness", "key", "--data-dir", str(data), "--name", f"{name}.example/witness")
            assert run.returncode == 0, run.stderr
            keys.append(run.stdout.splitlines()[-1])
        self.ports = [free_port() for _ in names]
        self.policy_path = tmp_path / "alliance.policy"
        self.policy_path.write_text(
            "".join(f"witness {n} {k} http://127.0.0.1:{p}\n" for n, k, p in zip(names, keys, self.ports, strict=True))
            + "group two-of-three 2 court notary partner\nquorum two-of-three\n"
        )
        self.serve = ServeProcess(
            tmp_path / "ledger",
            {
                "EVIDENCE_WITNESS_POLICY": str(self.policy_path),
                "EVIDENCE_WITNESS_WAIT": str(WAIT),
                "EVIDENCE_BATCH_MAX_AGE": "0.2",
                "EVIDENCE_WITNESS_TIMEOUT": "2",
            },
        ).start()
        self.log_vkey = json.loads(http("GET", f"{self.serve.url}/v1/keys")[2])["keys"][0]["vkey"]
        for name, port in zip(names, self.ports, strict=True):
            w = WitnessProcess(tmp_path / name, [self.log_vkey], name=f"{name}.example/witness")
            w.port, w.url = port, f"http://127.0.0.1:{port}"
            self.witnesses.append(w.start())
        self.api_key = self.serve.tenant()
        (tmp_path / "log.vkey").write_text(self.log_vkey + "\n")
        self.policy_path.write_text(f"log {self.log_vkey}\n" + self.policy_path.read_text())

    def close(self) -> None:
        self.serve.stop()
        for w in self.witnesses:
            w.stop()

    def deposit(self) -> str:
        digest = hashlib.sha256(str(time.monotonic_ns()).encode()).hexdigest()
        status, _, body = http(
            "POST",
            f"{self.serve.url}/v1/evidence",
            body=json.dumps({"sha256": digest}).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        assert status == 202, body
        return str(json.loads(body)["id"])

    def receipt(self, evidence_id: str, timeout: float = 30) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
        """Poll until 200; returns the receipt, the seconds it took, and the 202 answers seen."""
        start = time.monotonic()
        waits: list[dict[str, Any]] = []
        while True:
            status, _, body = http(
                "GET",
                f"{self.serve.url}/v1/evidence/{evidence_id}/receipt",
                headers={"Authorization": f"Bearer {self.api_key}"},
            )
            if status == 200:
                return json.loads(body), time.monotonic() - start, waits
            assert status == 202, body
            waits.append(json.loads(body))
            assert time.monotonic() - start < timeout, waits[-1]
            time.sleep(0.05)

    def cosigners(self, doc: dict[str, Any]) -> list[str]:
        note = doc["ledger"]["checkpoint"].encode()
        keys = [WitnessKey.from_vkey(w.vkey) for w in self.witnesses]
        return [c.witness.name.split(".")[0] for c in check_cosignatures(note, keys) if c.valid]


@pytest.fixture
def alliance(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path)
    try:
        yield setup
    finally:
        setup.close()


def test_alliance_of_three_real_witnesses(alliance: Setup, tmp_path: Path) -> None:
    # 1. all up: the receipt carries at least the quorum, /v1/checkpoint soon all three
    doc, _, _ = alliance.receipt(alliance.deposit())
    assert len(alliance.cosigners(doc)) >= 2
    path = tmp_path / "r1.json"
    path.write_text(json.dumps(doc))
    run = evidence("verify", str(path), "--policy", str(alliance.policy_path), "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert "no later than" in out["statement"] and "cosigned by" in out["statement"]
    deadline = time.monotonic() + 10
    while http("GET", f"{alliance.serve.url}/v1/checkpoint")[2].count("\u2014 ".encode()) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # 2. one witness killed (SIGKILL): the quorum still holds, receipts do not wait for the dead one
    alliance.witnesses[2].kill()
    doc, took, _ = alliance.receipt(alliance.deposit())
    assert sorted(alliance.cosigners(doc)) == ["court", "notary"] and took < WAIT

    # 3. two killed: receipts answer 202 "waiting for witnesses", then after the wait come with what there is
    alliance.witnesses[1].kill()
    doc, took, waits = alliance.receipt(alliance.deposit())
    assert any(w.get("waiting_for") == "witnesses" for w in waits), waits
    assert took >= WAIT - 0.5 and alliance.cosigners(doc) == ["court"]
    path.write_text(json.dumps(doc))
    assert evidence("verify", str(path), "--policy", str(alliance.policy_path)).returncode == 1
    assert evidence("verify", str(path), "--key", alliance.log_vkey).returncode == 0
    deadline = time.monotonic() + 10
    while "witness shortfall" not in alliance.serve.log_path.read_text():
        assert time.monotonic() < deadline, "no shortfall log line"
        time.sleep(0.1)
    metrics = http("GET", f"{alliance.serve.url}/metrics")[2].decode()
    assert "evidence_witness_shortfall_total 1.0" in metrics or "evidence_witness_shortfall_total 2.0" in metrics

    # 4. brought back: both catch up from the sizes they remember; the next receipt has all three
    alliance.witnesses[1].start()
    alliance.witnesses[2].start()
    deadline = time.monotonic() + 30
    while True:
        doc, _, _ = alliance.receipt(alliance.deposit())
        if sorted(alliance.cosigners(doc)) == ["court", "notary", "partner"]:
            break
        assert time.monotonic() < deadline, alliance.cosigners(doc)
        time.sleep(0.5)
    path.write_text(json.dumps(doc))
    assert evidence("verify", str(path), "--policy", str(alliance.policy_path)).returncode == 0

    # 5. a fork signed with the operator's own key is refused by every witness, and kept as evidence
    signer = Signer.from_skey((alliance.serve.data_dir / "signing.key").read_text())
    real = http("GET", f"{alliance.serve.url}/v1/checkpoint")[2]
    for w in alliance.witnesses:
        status, headers, body = w.add_checkpoint(AddCheckpoint.build(0, [], real).to_bytes())
        assert status == 409 and headers["Content-Type"] == "text/x.tlog.size", body  # tells its size
        size = int(body)
        forked = sign_note(Checkpoint(signer.name, size, b"\x66" * 32).to_bytes(), [signer])
        status, _, body = w.add_checkpoint(AddCheckpoint.build(size, [], forked).to_bytes())
        assert status == 422 and b"fork" in body, (w.name, status, body)
        assert "MISBEHAVIOUR of log" in w.log_path.read_text()
