"""Receipt format v2 through the service (issue 14): cases and phases, depositor attestations (registered Ed25519
keys, X.509 chains made with openssl against the CAs the service trusts), co-deposits, and every refusal naming
what was wrong with nothing stored. Each receipt the service issues is checked by the offline verifier."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service import sealing
from service.cli import cli
from service.config import Settings
from service.core import attestation
from service.core.formats import CaseRef, claim_lines, text_sha256
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import db, ledger
from tests.integration.test_bulk import auth, make_app, new_key
from tests.unit.test_verify_v2 import Pki

DIGEST = hashlib.sha256(b"the contract").digest()


@pytest.fixture
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def runtime(tmp_path: Path, db_url: str, pki: Pki) -> Iterator[Runtime]:
    db.upgrade(db_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, depositor_ca_files=(pki.path / "root.pem",))
    rt = Runtime.from_settings(settings)
    rt.prepare_signing()
    yield rt
    rt.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return make_app(runtime).test_client()


def counts(runtime: Runtime) -> tuple[int, int]:
    with runtime.engine.connect() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(ledger.evidence)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(ledger.evidence_v2)).scalar_one()),
        )


def seal(runtime: Runtime) -> None:
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=100, max_age=0, force=True)


def receipt(client: FlaskClient, key: str, evidence_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key))
    assert r.status_code == 200, r.get_data(as_text=True)
    doc = r.get_json()
    assert isinstance(doc, dict)
    return doc


def claims(
    *, label: str | None = None, case: str | None = None, phase: int = 1, name: str = "", cosigns: str | None = None
) -> list[str]:
    ref = CaseRef(case, phase, text_sha256(name)) if case else None
    return claim_lines(DIGEST, (), None if label is None else text_sha256(label), ref, cosigns)


def ed25519_attestation(key: Ed25519PrivateKey, lines: list[str]) -> str:
    stmt = attestation.build_statement(lines, dt.datetime.now(dt.UTC))
    return base64.b64encode(attestation.sign_statement(stmt, key)).decode()


def register(runtime: Runtime, tmp_path: Path, key: Ed25519PrivateKey, tenant: str = "acme") -> None:
    path = tmp_path / f"{tenant}-depositor.b64"
    path.write_text(base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode())
    r = CliRunner().invoke(
        cli,
        ["tenant", "key", "add", tenant, "--depositor-key", str(path)],
        env={"DATABASE_URL": str(runtime.settings.database_url)},
    )
    assert r.exit_code == 0, r.output
    assert "Registered depositor key" in r.output


def new_case(client: FlaskClient, key: str, title: str = "买卖合同纠纷 2026-001") -> str:
    r = client.post("/v1/cases", json={"title": title, "reference": "(2026)浙0192民初1号"}, headers=auth(key))
    assert r.status_code == 201, r.get_data(as_text=True)
    return str(r.get_json()["id"])


def deposit(client: FlaskClient, key: str, **body: Any) -> Any:
    return client.post("/v1/evidence", json={"sha256": DIGEST.hex(), **body}, headers=auth(key))


# --- cases and phases --------------------------------------------------------------------------------------------


def test_a_case_with_ordered_attested_phases_and_provable_receipts(
    runtime: Runtime, client: FlaskClient, tmp_path: Path
) -> None:
    key = new_key(runtime)
    signer = Ed25519PrivateKey.generate()
    register(runtime, tmp_path, signer)
    case = new_case(client, key)
    ids = []
    for phase, name in enumerate(["签约", "付款", "交付"], start=1):
        att = ed25519_attestation(signer, claims(label=f"p{phase}.pdf", case=case, phase=phase, name=name))
        r = deposit(client, key, label=f"p{phase}.pdf", case=case, phase=phase, phase_name=name, attestation=att)
        assert r.status_code == 202, r.get_data(as_text=True)
        body = r.get_json()
        assert body["case"] == case and body["phase"] == phase and body["depositor"]["kind"] == "ed25519-key"
        ids.append(body["id"])
    seal(runtime)
    shown = client.get(f"/v1/cases/{case}", headers=auth(key)).get_json()
    assert [p["phase"] for p in shown["phases"]] == [1, 2, 3]
    assert [p["phase_name"] for p in shown["phases"]] == ["签约", "付款", "交付"]
    assert [p["evidence"]["id"] for p in shown["phases"]] == ids
    assert all(p["evidence"]["status"] == "sealed" for p in shown["phases"])
    for i, evidence_id in enumerate(ids, start=1):
        doc = receipt(client, key, evidence_id)
        assert doc["format"] == "evidence-receipt/v2"
        assert doc["evidence"]["case"] == {"id": case, "phase": i, "phase_name": shown["phases"][i - 1]["phase_name"]}
        result = verify_receipt(doc, sha256=DIGEST, trusted_keys=[runtime.signer.verifier])
        assert result.valid, result.to_json()
        assert result.depositor is not None and result.depositor.kind == "ed25519-key"


def test_phase_repeat_skip_and_another_tenants_case_are_refused_with_nothing_stored(
    runtime: Runtime, client: FlaskClient
) -> None:
    key, other = new_key(runtime), new_key(runtime, "other")
    case = new_case(client, key)
    assert deposit(client, key, case=case, phase=1, phase_name="签约").status_code == 202
    before = counts(runtime)
    r = deposit(client, key, case=case, phase=1, phase_name="again")
    assert (
        r.status_code == 409
        and "phase 1 of case" in r.get_json()["detail"]
        and "next phase is 2" in (r.get_json()["detail"])
    )
    r = deposit(client, key, case=case, phase=3, phase_name="交付")
    assert r.status_code == 422 and "skips phase 2" in r.get_json()["detail"]
    r = deposit(client, other, case=case, phase=2, phase_name="付款")
    assert r.status_code == 404 and f"no case with id {case!r} for this tenant" in r.get_json()["detail"]
    assert client.get(f"/v1/cases/{case}", headers=auth(other)).status_code == 404
    r = deposit(client, key, case=case, phase_name="付款")
    assert r.status_code == 400 and "needs 'phase'" in r.get_json()["detail"]
    r = deposit(client, key, phase=2, phase_name="付款")
    assert r.status_code == 400 and "need 'case'" in r.get_json()["detail"]
    r = deposit(client, key, case=case, phase=2, phase_name="bad\u2028name")
    assert r.status_code == 400 and "the phase name" in r.get_json()["detail"]
    assert counts(runtime) == before
    assert deposit(client, key, case=case, phase=2, phase_name="付款").status_code == 202


# --- attestations ------------------------------------------------------------------------------------------------


def test_attestation_refusals_name_the_check_and_store_nothing(
    runtime: Runtime, client: FlaskClient, tmp_path: Path
) -> None:
    key = new_key(runtime)
    registered, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    register(runtime, tmp_path, registered)
    before = counts(runtime)
    # over other data: the statement names another label
    att = ed25519_attestation(registered, claims(label="other.pdf"))
    r = deposit(client, key, label="contract.pdf", attestation=att)
    assert r.status_code == 422
    assert "the attestation is refused: the attestation's statement does not match the leaf" in r.get_json()["detail"]
    # signed by a key the tenant never registered
    r = deposit(
        client, key, label="contract.pdf", attestation=ed25519_attestation(stranger, claims(label="contract.pdf"))
    )
    assert r.status_code == 422 and "not a registered depositor key of this tenant" in r.get_json()["detail"]
    # not base64, not an attestation
    assert deposit(client, key, attestation="@@").status_code == 400
    r = deposit(client, key, attestation=base64.b64encode(b"hello\n").decode())
    assert r.status_code == 422 and "no empty line" in r.get_json()["detail"]
    assert counts(runtime) == before


def test_x509_attestation_from_an_openssl_chain_is_verified_and_an_untrusted_one_refused(
    runtime: Runtime, client: FlaskClient, pki: Pki, tmp_path: Path
) -> None:
    key = new_key(runtime)
    other = Pki(tmp_path / "other", name="Other")
    short = Pki(tmp_path / "short", name="Test", depositor_days=1)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)  # openssl's notBefore has whole seconds
    raw = pki.attest(claims(label="合同.pdf"), now, ["dep", "int"])
    r = deposit(client, key, label="合同.pdf", attestation=base64.b64encode(raw).decode())
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.get_json()["depositor"] == {
        "kind": "x509",
        "identity": "CN=张三,O=Test 示例公司,C=CN",
        "fingerprint": pki.cert("dep").fingerprint(hashes.SHA256()).hex(),
        "ca_verified": True,
        "signed": r.get_json()["depositor"]["signed"],
    }
    evidence_id = r.get_json()["id"]
    before = counts(runtime)
    # the intermediate missing
    raw = pki.attest(claims(label="合同.pdf"), now, ["dep"])
    r = deposit(client, key, label="合同.pdf", attestation=base64.b64encode(raw).decode())
    assert r.status_code == 422 and "intermediate CA certificate is missing" in r.get_json()["detail"]
    # from another CA
    raw = other.attest(claims(label="合同.pdf"), now, ["dep", "int", "root"])
    r = deposit(client, key, label="合同.pdf", attestation=base64.b64encode(raw).decode())
    assert r.status_code == 422 and "not a trusted depositor CA" in r.get_json()["detail"]
    # expired at the signing time
    raw = short.attest(claims(label="合同.pdf"), now + dt.timedelta(days=3), ["dep", "int"])
    r = deposit(client, key, label="合同.pdf", attestation=base64.b64encode(raw).decode())
    assert r.status_code == 422  # signed 3 days from now: outside the window, or the certificate expired
    assert counts(runtime) == before
    seal(runtime)
    doc = receipt(client, key, evidence_id)
    roots = x509.load_pem_x509_certificates((pki.path / "root.pem").read_bytes())
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=[runtime.signer.verifier], depositor_cas=roots)
    assert result.valid and result.depositor is not None and result.depositor.ca_verified is True


# --- co-deposit --------------------------------------------------------------------------------------------------


def test_co_deposit_is_a_new_leaf_referring_to_the_first(runtime: Runtime, client: FlaskClient, tmp_path: Path) -> None:
    key = new_key(runtime)
    alice, bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    register(runtime, tmp_path, alice)
    register(runtime, tmp_path, bob)
    case = new_case(client, key)
    first = deposit(
        client,
        key,
        label="合同.pdf",
        case=case,
        phase=1,
        phase_name="签约",
        attestation=ed25519_attestation(alice, claims(label="合同.pdf", case=case, name="签约")),
    )
    assert first.status_code == 202, first.get_data(as_text=True)
    first_id = first.get_json()["id"]
    # bob countersigns: the same statement plus the reference to the first deposit
    att = ed25519_attestation(bob, claims(label="合同.pdf", case=case, name="签约", cosigns=first_id))
    r = client.post(f"/v1/evidence/{first_id}/cosign", json={"attestation": att}, headers=auth(key))
    assert r.status_code == 202, r.get_data(as_text=True)
    co_id = r.get_json()["id"]
    assert r.get_json()["cosigns"] == first_id and r.get_json()["phase"] == 1
    # alice's statement is not bob's countersignature
    before = counts(runtime)
    att = ed25519_attestation(bob, claims(label="合同.pdf", case=case, name="签约"))
    r = client.post(f"/v1/evidence/{first_id}/cosign", json={"attestation": att}, headers=auth(key))
    assert r.status_code == 422 and "cosigns" in r.get_json()["detail"]
    r = client.post(f"/v1/evidence/{co_id}/cosign", json={"attestation": att}, headers=auth(key))
    assert r.status_code == 400 and "itself a countersignature" in r.get_json()["detail"]
    assert counts(runtime) == before
    seal(runtime)
    shown = client.get(f"/v1/cases/{case}", headers=auth(key)).get_json()
    [phase] = shown["phases"]
    assert phase["evidence"]["id"] == first_id
    assert [c["id"] for c in phase["countersignatures"]] == [co_id]
    assert len(phase["parties"]) == 2
    a, b = receipt(client, key, first_id), receipt(client, key, co_id)
    assert b["evidence"]["cosigns"] == first_id
    for doc in (a, b):
        assert verify_receipt(doc, sha256=DIGEST, trusted_keys=[runtime.signer.verifier]).valid


def test_certificate_prints_every_party_of_a_co_deposit_or_unattested(
    runtime: Runtime, client: FlaskClient, tmp_path: Path, pki: Pki
) -> None:
    from tests.integration.test_certificate_api import pdftotext, squeezed

    key = new_key(runtime)
    bob = Ed25519PrivateKey.generate()
    register(runtime, tmp_path, bob)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    raw = pki.attest(claims(label="合同.pdf"), now, ["dep", "int"])
    first = deposit(client, key, label="合同.pdf", attestation=base64.b64encode(raw).decode()).get_json()["id"]
    att = ed25519_attestation(bob, claims(label="合同.pdf", cosigns=first))
    assert client.post(f"/v1/evidence/{first}/cosign", json={"attestation": att}, headers=auth(key)).status_code == 202
    plain = deposit(client, key, label="无签名.pdf").get_json()["id"]
    seal(runtime)
    pdf = client.get(f"/v1/evidence/{first}/certificate.pdf", headers=auth(key))
    assert pdf.status_code == 200, pdf.get_data(as_text=True)
    text = squeezed(pdftotext(pdf.data, tmp_path, layout=False))
    for words in (
        "CN=张三,O=Test 示例公司,C=CN — 证书经受信任 CA 验证 · certificate verified against a trusted CA",
        "（会签 countersigned） — 登记公钥 · bare Ed25519 key registered with the operator",
        "the label is bound by the ledger",
    ):
        assert squeezed(words) in text, words
    pdf = client.get(f"/v1/evidence/{plain}/certificate.pdf", headers=auth(key))
    text = squeezed(pdftotext(pdf.data, tmp_path, layout=False))
    assert squeezed("unattested: no depositor signed this deposit") in text and "无签名.pdf" in text


def test_batch_items_may_carry_attestations_and_a_refused_one_names_its_index(
    runtime: Runtime, client: FlaskClient, tmp_path: Path
) -> None:
    key = new_key(runtime)
    signer = Ed25519PrivateKey.generate()
    register(runtime, tmp_path, signer)
    other = hashlib.sha256(b"other").hexdigest()
    good = {
        "items": [
            {"sha256": other, "label": "plain.pdf"},
            {
                "sha256": DIGEST.hex(),
                "label": "合同.pdf",
                "attestation": ed25519_attestation(signer, claims(label="合同.pdf")),
            },
        ]
    }
    r = client.post("/v1/evidence/batch", json=good, headers=auth(key))
    assert r.status_code == 202, r.get_data(as_text=True)
    ids = [i["id"] for i in r.get_json()["items"]]
    before = counts(runtime)
    bad = {
        "items": [
            {"sha256": other},
            {
                "sha256": DIGEST.hex(),
                "label": "x.pdf",
                "attestation": ed25519_attestation(signer, claims(label="y.pdf")),
            },
        ]
    }
    r = client.post("/v1/evidence/batch", json=bad, headers=auth(key))
    assert r.status_code == 422 and "items[1].attestation: the attestation is refused" in r.get_json()["detail"]
    assert counts(runtime) == before  # all or nothing
    seal(runtime)
    doc = receipt(client, key, ids[1])
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=[runtime.signer.verifier])
    assert result.valid and result.depositor is not None and result.label == "合同.pdf"


def test_case_certificate_lists_every_phase_and_attaches_every_receipt(
    runtime: Runtime, client: FlaskClient, tmp_path: Path
) -> None:
    import io

    import pypdf

    from tests.integration.test_certificate_api import pdftotext, squeezed

    key = new_key(runtime)
    signer = Ed25519PrivateKey.generate()
    register(runtime, tmp_path, signer)
    case = new_case(client, key)
    ids = []
    for phase, name in enumerate(["签约", "付款"], start=1):
        att = ed25519_attestation(signer, claims(label=f"p{phase}.pdf", case=case, phase=phase, name=name))
        r = deposit(client, key, label=f"p{phase}.pdf", case=case, phase=phase, phase_name=name, attestation=att)
        ids.append(r.get_json()["id"])
    pending = client.get(f"/v1/cases/{case}/certificate.pdf", headers=auth(key))
    assert pending.status_code == 202
    seal(runtime)
    r = client.get(f"/v1/cases/{case}/certificate.pdf", headers=auth(key))
    assert r.status_code == 200 and r.mimetype == "application/pdf", r.get_data(as_text=True)
    text = squeezed(pdftotext(r.data, tmp_path, layout=False))
    for words in ("买卖合同纠纷 2026-001", "第 1 阶段", "签约", "第 2 阶段", "付款", ids[0], ids[1], "p2.pdf"):
        assert squeezed(words) in text, words
    attachments = pypdf.PdfReader(io.BytesIO(r.data)).attachments
    assert sorted(attachments) == sorted(f"receipt-phase{n}-{i}.json" for n, i in enumerate(ids, start=1))
    for name, (data,) in attachments.items():
        doc = json.loads(data)
        assert verify_receipt(doc, trusted_keys=[runtime.signer.verifier]).valid, name
    other = new_key(runtime, "other")
    assert client.get(f"/v1/cases/{case}/certificate.pdf", headers=auth(other)).status_code == 404


def _rezip(source: Path, target: Path, drop: set[str], index: dict[str, Any]) -> None:
    """``source`` without the members ``drop``, with ``index`` as bundle.json and a manifest that fits again."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        members = {
            n: src.read(n) for n in src.namelist() if n not in drop and n not in ("MANIFEST-SHA256.txt", "bundle.json")
        }
        members["bundle.json"] = json.dumps(index, ensure_ascii=False).encode()
        for name, data in members.items():
            dst.writestr(name, data)
        manifest = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(members.items()))
        dst.writestr("MANIFEST-SHA256.txt", manifest)


def test_case_bundle_holds_the_case_and_verify_checks_every_receipt_and_the_case_order(
    runtime: Runtime, client: FlaskClient, tmp_path: Path
) -> None:
    import zipfile

    from tests.integration.test_bundle import sha256sum_check

    key = new_key(runtime)
    signer = Ed25519PrivateKey.generate()
    register(runtime, tmp_path, signer)
    case = new_case(client, key)
    ids = []
    for phase, name in enumerate(["签约", "付款", "交付"], start=1):
        att = ed25519_attestation(signer, claims(label=f"p{phase}.pdf", case=case, phase=phase, name=name))
        extra = {"attestation": att} if phase < 3 else {}  # phase 3 unattested
        r = deposit(client, key, label=f"p{phase}.pdf", case=case, phase=phase, phase_name=name, **extra)
        assert r.status_code == 202, r.get_data(as_text=True)
        ids.append(r.get_json()["id"])
    pending = client.get(f"/v1/cases/{case}/bundle.zip", headers=auth(key))
    assert pending.status_code == 202 and pending.headers["Retry-After"]
    seal(runtime)
    archive = tmp_path / "case.zip"
    with client.get(f"/v1/cases/{case}/bundle.zip", headers=auth(key)) as r:  # closes the spooled zip
        assert r.status_code == 200 and r.mimetype == "application/zip", r.get_data(as_text=True)
        assert f"case-{case}.zip" in r.headers["Content-Disposition"]
        archive.write_bytes(r.data)
    check = sha256sum_check(archive, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        index = json.loads(z.read("bundle.json"))
        readme = z.read("README.txt").decode()
    described = index["case"]
    assert described["id"] == case and described["title"] == "买卖合同纠纷 2026-001"
    assert described["reference"] == "(2026)浙0192民初1号"
    assert [(p["phase"], p["phase_name"], p["evidence"]) for p in described["phases"]] == list(
        zip([1, 2, 3], ["签约", "付款", "交付"], ids, strict=True)
    )
    assert described["certificate"] in names
    for evidence_id in ids:
        assert f"receipts/{evidence_id}.receipt.json" in names
        # each phase's certificate, or the README says why it could not be drawn (the receipt suffices)
        assert f"certificates/{evidence_id}.certificate.pdf" in names or (
            f"{evidence_id}: 未附存证证书" in readme and "no certificate of deposit in this bundle:" in readme
        ), readme
    assert f"certificates/{ids[2]}.certificate.pdf" in names  # an unattested phase's certificate is always drawn
    assert {"evidence-ledger-verify.html", "keys/operator-keys.txt", "keys/keys.json"} <= names
    assert "SPEC §6.2" in readme and "第 3 阶段" in readme

    vkey = runtime.signer.verifier.vkey
    ok = CliRunner().invoke(cli, ["verify", str(archive), "--key", vkey])
    assert ok.exit_code == 0, ok.output
    assert f"[VALID]   case {case}: phases 1..3" in ok.output

    # the CLI builder describes the case from the receipts alone
    paths = []
    for evidence_id in ids:
        path = tmp_path / f"{evidence_id}.receipt.json"
        path.write_bytes(client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key)).get_data())
        paths.append(str(path))
    local = tmp_path / "local.zip"
    made = CliRunner().invoke(cli, ["bundle", *paths, "-o", str(local), "--key", vkey])
    assert made.exit_code == 0, made.output
    with zipfile.ZipFile(local) as z:
        assert [p["evidence"] for p in json.loads(z.read("bundle.json"))["case"]["phases"]] == ids
    ok = CliRunner().invoke(cli, ["verify", str(local), "--key", vkey])
    assert ok.exit_code == 0 and f"case {case}: phases 1..3" in ok.output, ok.output

    # phase 2 removed, bundle.json and the manifest made to fit: the bundle is intact, the case is not
    index["deposits"] = [d for d in index["deposits"] if d["id"] != ids[1]]
    index["case"]["phases"] = [p for p in index["case"]["phases"] if p["phase"] != 2]
    gap = tmp_path / "gap.zip"
    _rezip(archive, gap, {f"receipts/{ids[1]}.receipt.json", f"certificates/{ids[1]}.certificate.pdf"}, index)
    assert sha256sum_check(gap, tmp_path / "gap").returncode == 0
    bad = CliRunner().invoke(cli, ["verify", str(gap), "--key", vkey])
    assert bad.exit_code == 1, bad.output
    assert "[PASS] integrity" in bad.output
    assert f"[INVALID] case {case} (SPEC §6.2): phase 2 of 1..3 is missing" in bad.output
    as_json = CliRunner().invoke(cli, ["verify", str(gap), "--key", vkey, "--json"])
    assert json.loads(as_json.output)["cases"] == [
        {"case": case, "valid": False, "reason": "phase 2 of 1..3 is missing: the case is incomplete", "phases": 2}
    ]

    other = new_key(runtime, "other")
    assert client.get(f"/v1/cases/{case}/bundle.zip", headers=auth(other)).status_code == 404
    assert client.get("/v1/cases/nosuchcase/bundle.zip", headers=auth(key)).status_code == 404
