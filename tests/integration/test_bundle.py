"""The evidence bundle (证据包, issue 12 item 6): ``GET /v1/evidence/{id}/bundle.zip``, ``evidence bundle`` and
``evidence verify case.zip``, with real deposits sealed by the service and the manifest checked by ``sha256sum -c``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from service import sealing
from service.api import create_app
from service.cli import cli
from service.config import DEFAULT_DOWNLOAD_DIR, Settings
from service.core.formats import utc_now
from service.court.certificate import extract_receipt
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant
from tests.conftest import skip_or_fail


@pytest.fixture
def service(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[FlaskClient, Runtime, str]]:
    db.upgrade(sqlite_url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        public_url="https://ledger.example.org",
        download_dir=DEFAULT_DOWNLOAD_DIR,
    )
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    with runtime.engine.begin() as conn:
        key = create_tenant(conn, "court", utc_now())
    yield create_app(runtime=runtime, start_sealer=False).test_client(), runtime, key
    runtime.engine.dispose()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def deposit(client: FlaskClient, key: str, path: Path, label: str) -> str:
    response = client.post(
        "/v1/evidence",
        json={"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "label": label},
        headers=auth(key),
    )
    assert response.status_code == 202
    return str(response.get_json()["id"])


def seal(runtime: Runtime) -> None:
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=1000, max_age=1.0, force=True)


def sha256sum_check(archive: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "unzipped"
    with zipfile.ZipFile(archive) as z:
        z.extractall(out)
    tool = shutil.which("sha256sum")
    if tool is None:
        skip_or_fail("sha256sum (coreutils) is missing")
    assert tool is not None
    return subprocess.run([tool, "-c", "MANIFEST-SHA256.txt"], cwd=out, capture_output=True, text=True)


def test_bundle_zip_of_a_sealed_deposit_holds_everything_a_court_needs(
    service: tuple[FlaskClient, Runtime, str], tmp_path: Path
) -> None:
    client, runtime, key = service
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(b"%PDF-1.7 the contract")
    evidence_id = deposit(client, key, contract, "买卖合同")
    assert client.get(f"/v1/evidence/{evidence_id}/bundle.zip", headers=auth(key)).status_code == 202
    seal(runtime)
    with runtime.engine.begin() as conn:
        other = create_tenant(conn, "someone-else", utc_now())
    assert client.get(f"/v1/evidence/{evidence_id}/bundle.zip", headers=auth(other)).status_code == 404

    archive = tmp_path / "case.zip"
    # (a WSGI server closes the response, and with it the spooled zip; so does this block)
    with client.get(f"/v1/evidence/{evidence_id}/bundle.zip", headers=auth(key)) as response:
        assert response.status_code == 200 and response.mimetype == "application/zip"
        assert response.headers["Content-Disposition"] == f"attachment; filename=evidence-{evidence_id}.zip"
        archive.write_bytes(response.get_data())
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        receipt = z.read(f"receipts/{evidence_id}.receipt.json")
        certificate = z.read(f"certificates/{evidence_id}.certificate.pdf")
        page = z.read("evidence-ledger-verify.html").decode()
        keys_text = z.read("keys/operator-keys.txt").decode()
        readme = z.read("README.txt").decode()
        index = json.loads(z.read("bundle.json"))
        manifest = z.read("MANIFEST-SHA256.txt").decode()
    assert receipt == client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key)).get_data()
    assert extract_receipt(certificate) == receipt
    verifier = runtime.signer.verifier
    assert verifier.vkey in page and verifier.vkey in keys_text and verifier.fingerprint in keys_text
    assert any(n.startswith("verifier/evidence_ledger-") and n.endswith(".whl") for n in names)
    assert "证据包" in readme and "Evidence bundle" in readme and "sha256sum -c MANIFEST-SHA256.txt" in readme
    assert "pip install --no-index --find-links verifier/ evidence-ledger" in readme
    assert index["deposits"] == [
        {
            "id": evidence_id,
            "sha256": hashlib.sha256(contract.read_bytes()).hexdigest(),
            "label": "买卖合同",
            "receipt": f"receipts/{evidence_id}.receipt.json",
            "certificate": f"certificates/{evidence_id}.certificate.pdf",
        }
    ]
    # every member but the manifest is listed, and sha256sum agrees with each line
    listed = {line.split("  ", 1)[1] for line in manifest.splitlines()}
    assert listed == names - {"MANIFEST-SHA256.txt"}
    checked = sha256sum_check(archive, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # evidence verify case.zip: no original file in a server bundle: the receipt is checked on its digest
    vkey = verifier.vkey
    result = CliRunner().invoke(cli, ["verify", str(archive), "--key", vkey])
    assert result.exit_code == 0, result.output
    assert "[VALID]" in result.output and "no original file" in result.output


def test_several_deposits_with_their_files_in_one_bundle_and_verify_case_zip(
    service: tuple[FlaskClient, Runtime, str], tmp_path: Path
) -> None:
    client, runtime, key = service
    files = {}
    for name, content in (
        ("contract.pdf", b"%PDF-1.7 contract"),
        ("annex-1.xlsx", b"PK annex one"),
        ("signed.pdf", b"%PDF-1.7 the signed version"),
    ):
        path = tmp_path / name
        path.write_bytes(content)
        files[name] = (path, deposit(client, key, path, name))
    seal(runtime)
    receipts = {}
    for name, (_path, evidence_id) in files.items():
        receipts[name] = tmp_path / f"{name}.receipt.json"
        receipts[name].write_bytes(client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key)).get_data())
    certificate = tmp_path / "signed.certificate.pdf"
    certificate.write_bytes(
        client.get(f"/v1/evidence/{files['signed.pdf'][1]}/certificate.pdf", headers=auth(key)).get_data()
    )
    vkey = runtime.signer.verifier.vkey
    runner = CliRunner()
    case = tmp_path / "case.zip"
    # any order: receipts, a certificate instead of a receipt, files
    made = runner.invoke(
        cli,
        [
            "bundle",
            str(files["annex-1.xlsx"][0]),
            str(receipts["contract.pdf"]),
            str(certificate),
            str(receipts["annex-1.xlsx"]),
            str(files["contract.pdf"][0]),
            str(files["signed.pdf"][0]),
            "-o",
            str(case),
            "--key",
            vkey,
        ],
    )
    assert made.exit_code == 0, made.output
    assert "3 deposit(s), 3 with the original file" in made.stdout
    with zipfile.ZipFile(case) as z:
        names = set(z.namelist())
        assert z.read(f"certificates/{files['signed.pdf'][1]}.certificate.pdf") == certificate.read_bytes()
    assert {"files/contract.pdf", "files/annex-1.xlsx", "files/signed.pdf"} <= names
    assert sha256sum_check(case, tmp_path).returncode == 0

    ok = runner.invoke(cli, ["verify", str(case), "--key", vkey])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.count("[VALID]") == 3 and "[PASS] integrity" in ok.stdout
    as_json = json.loads(runner.invoke(cli, ["verify", str(case), "--key", vkey, "--json"]).stdout)
    assert as_json["valid"] and len(as_json["deposits"]) == 3

    # an altered original in the bundle: the manifest and the receipt both say so
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(case) as src, zipfile.ZipFile(altered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data + b" (edited)" if info.filename == "files/contract.pdf" else data)
    bad = runner.invoke(cli, ["verify", str(altered), "--key", vkey])
    assert bad.exit_code == 1, bad.output
    assert "files/contract.pdf has changed" in bad.stdout and "[INVALID]" in bad.stdout

    # no key: a usage error that says where the bundle's keys are
    nokey = runner.invoke(cli, ["verify", str(case)], env={"EVIDENCE_TRUSTED_KEYS": ""})
    assert nokey.exit_code == 2 and "keys/operator-keys.txt" in nokey.output


def test_bundle_refuses_a_file_of_no_receipt_and_writes_nothing(
    service: tuple[FlaskClient, Runtime, str], tmp_path: Path
) -> None:
    client, runtime, key = service
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(b"%PDF-1.7 contract")
    evidence_id = deposit(client, key, contract, "contract")
    seal(runtime)
    receipt = tmp_path / "contract.receipt.json"
    receipt.write_bytes(client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key)).get_data())
    stranger = tmp_path / "contrat-v2.pdf"
    stranger.write_bytes(b"%PDF-1.7 another version")
    case = tmp_path / "case.zip"
    result = CliRunner().invoke(cli, ["bundle", str(receipt), str(stranger), "-o", str(case)])
    assert result.exit_code == 2
    assert "matches none of the receipts" in result.output and "not the file" in result.output
    assert not case.exists() and not list(tmp_path.glob(".bundle-*"))
    nothing = CliRunner().invoke(cli, ["bundle", str(contract), "-o", str(case)])
    assert nothing.exit_code == 2 and "no receipt among the items" in nothing.output


def test_a_witness_policy_goes_into_the_bundle_with_its_keys(tmp_path: Path) -> None:
    import io

    from service.core.cosignature import WitnessSigner
    from service.core.policy import Policy, parse_policy
    from service.court.bundle import Deposit, write_bundle

    witness = WitnessSigner.generate("witness.example").verifier
    policy = Policy.from_witnesses([witness], 1).to_text()
    receipt = (Path(__file__).resolve().parents[1] / "vectors" / "receipts" / "single.json").read_bytes()
    out = io.BytesIO()
    doc = json.loads(receipt)
    write_bundle(
        out,
        [Deposit(doc["evidence"]["id"], doc["evidence"]["sha256"], None, receipt)],
        verify_page="<html></html>",
        keys=[],
        keys_source="test",
        created=utc_now(),
        witness_policy=policy,
    )
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as z:
        assert parse_policy(z.read("keys/witness-policy.txt")) == parse_policy(policy)
        assert "keys/witness-policy.txt" in z.read("MANIFEST-SHA256.txt").decode()
        assert "--policy keys/witness-policy.txt" in z.read("README.txt").decode()
