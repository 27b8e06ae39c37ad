"""Receipt format v2 (SPEC §2.1, §2.2, §6 steps 2a-2e and 8) against golden receipts made by an independent
generator (tests/vectors/make_golden_receipts_v2.py), one tampered receipt per new check, and X.509 depositor
chains made here with the ``openssl`` command (root CA -> intermediate -> depositor)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from service.core import attestation
from service.core.attestation import AttestationError
from service.core.errors import FormatError
from service.core.formats import CaseRef, LeafV2, format_time, text_sha256
from service.core.receipt import load_json
from service.core.verify import verify_receipt
from tests.unit.test_verify import DIGEST, GOLDEN, TRUSTED

V2 = GOLDEN.parent / "receipts-v2"
NAMES_V2 = sorted(p.stem for p in V2.glob("*.json"))
MANIFEST: dict[str, dict[str, Any]] = json.loads((V2 / "tampered" / "manifest.json").read_text())
DEPOSITOR_CAS = x509.load_pem_x509_certificates((V2 / "depositor-ca.pem").read_bytes())
# What each sub-step's reason says (the generator names the sub-step; the words are this verifier's).
WORDS = {
    "leaf version": "version v3; this verifier reads v1 and v2",
    "2a": "evidence.digests",
    "2b": "label",
    "2c": "phase",
    "2d": "countersign",
    "2e": "not the one the leaf binds",
    "8a": "the attestation is not valid (SPEC §2.2)",
    "8b": "",
    "8c": "",
    "8d": "",
}


def golden_v2(name: str) -> dict[str, Any]:
    doc = load_json((V2 / f"{name}.json").read_bytes())
    assert isinstance(doc, dict)
    return doc


def tampered(name: str) -> dict[str, Any]:
    doc = load_json((V2 / "tampered" / f"{name}.json").read_bytes())
    assert isinstance(doc, dict)
    return doc


def test_the_golden_set_covers_every_kind() -> None:
    assert {"v2-unattested", "v2-ed25519-case", "v2-cosign", "v2-x509-ecdsa", "v2-x509-rsa", "v2-sm3-digest"} <= set(
        NAMES_V2
    )
    assert {m["check"] for m in MANIFEST.values()} == set(WORDS)


@pytest.mark.parametrize("name", NAMES_V2)
@pytest.mark.parametrize("with_ca", [False, True], ids=["no-ca", "ca"])
def test_golden_v2_receipt_is_valid(name: str, with_ca: bool) -> None:
    result = verify_receipt(
        golden_v2(name), sha256=DIGEST, trusted_keys=TRUSTED, depositor_cas=DEPOSITOR_CAS if with_ca else ()
    )
    assert result.valid, result.to_json()
    assert sorted({c.step for c in result.checks}) == list(range(9))
    assert result.statement is not None and "was sealed in the ledger of example.org/evidence-ledger-test" in (
        result.statement
    )
    doc = golden_v2(name)
    if "attestation" not in doc["evidence"]:
        assert result.depositor is None and result.statement.endswith(" Unattested.")
        assert [c.checked for c in result.checks if c.step == 8] == [False]
        return
    assert result.depositor is not None
    if result.depositor.kind == "x509":
        assert result.depositor.ca_verified is (True if with_ca else None)
        expected = "verified against a trusted CA" if with_ca else "not checked against a CA"
        assert expected in result.statement
    else:
        assert result.depositor.identity.startswith("Ed25519 key ") and "(bare Ed25519 key)" in result.statement


def test_v2_statement_names_label_case_phase_and_depositor() -> None:
    result = verify_receipt(golden_v2("v2-x509-ecdsa"), trusted_keys=TRUSTED, depositor_cas=DEPOSITOR_CAS)
    assert result.label == "买卖合同 contract-of-sale.txt"
    assert (result.case_id, result.phase, result.phase_name) == ("goldenCASE-000000000001", 2, "交付 / delivery")
    assert result.depositor is not None and result.depositor.identity == "CN=张三,O=示例科技有限公司,C=CN"
    assert result.to_json()["depositor"]["ca_verified"] is True
    assert 'Label: "买卖合同 contract-of-sale.txt". Case goldenCASE-000000000001, phase 2 ("交付 / delivery").' in (
        result.statement or ""
    )


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_tampered_v2_receipt_fails_at_exactly_its_check(name: str) -> None:
    want = MANIFEST[name]
    cas = DEPOSITOR_CAS if want["trust_depositor_ca"] else ()
    result = verify_receipt(tampered(name), sha256=DIGEST, trusted_keys=TRUSTED, depositor_cas=cas)
    assert not result.valid
    assert result.step == want["step"], result.to_json()
    assert WORDS[want["check"]] in (result.reason or "")
    # every step before the failing one passed
    assert [c.step for c in result.checks if c.ok and c.checked] == sorted(
        {c.step for c in result.checks if c.ok and c.checked}
    )
    if want["trust_depositor_ca"]:  # an X.509 path fault is invisible without trusted CAs, never a crash
        assert verify_receipt(tampered(name), sha256=DIGEST, trusted_keys=TRUSTED).valid


def test_label_edited_anywhere_is_detected() -> None:
    """The point of the issue: a label no signature covered. Now changing it in the receipt fails step 2."""
    doc = golden_v2("v2-unattested")
    doc["evidence"]["label"] = doc["evidence"]["label"].replace("买卖", "租赁")
    result = verify_receipt(doc, trusted_keys=TRUSTED)
    assert result.step == 2 and "is not the label the leaf binds" in (result.reason or "")
    del doc["evidence"]["label"]
    result = verify_receipt(doc, trusted_keys=TRUSTED)
    assert result.step == 2 and "evidence.label' is missing" in (result.reason or "")


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_cli_names_the_failing_step_of_each_tampered_receipt(name: str) -> None:
    want = MANIFEST[name]
    args = [str(V2 / "tampered" / f"{name}.json"), "--key", str(GOLDEN / "trusted.vkey"), "--json"]
    if want["trust_depositor_ca"]:
        args += ["--depositor-ca", str(V2 / "depositor-ca.pem")]
    r = subprocess.run(
        [sys.executable, "-m", "service", "verify", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["step"] == want["step"] and WORDS[want["check"]] in out["reason"]


def test_cli_valid_v2_receipt_prints_the_depositor() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "verify",
            str(V2 / "v2-x509-rsa.json"),
            str(GOLDEN / "contract.txt"),
            "--key",
            str(GOLDEN / "trusted.vkey"),
            "--depositor-ca",
            str(V2 / "depositor-ca.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Deposited by: CN=Example Trading Co. Ltd.,O=Example Trading,C=CN (certificate verified" in r.stdout


# --- leaf v2 bytes ---------------------------------------------------------------------------------------------


def test_leaf_v2_round_trips_and_is_the_generators_bytes() -> None:
    for name in NAMES_V2:
        raw = base64.b64decode(golden_v2(name)["evidence"]["leaf"])
        assert LeafV2.from_bytes(raw).to_bytes() == raw


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t.replace("\ncase", "\nsm3 " + "0" * 64 + "\ncase"), "digest line out of place"),
        (lambda t: t.replace("\nlabel-sha256", "\nsm3 " + "0" * 66 + "\nlabel-sha256"), "must be 32 bytes"),
        (lambda t: t.replace("\nlabel-sha256", "\nSM3 " + "0" * 64 + "\nlabel-sha256"), "must match [a-z]"),
        (lambda t: t + "label-sha256 " + "0" * 64 + "\n", "repeated or out of order"),
        (lambda t: t.replace("\nphase 1\n", "\n"), "all three or none"),
        (lambda t: t.replace("\nphase 1\n", "\nphase 01\n"), "leading zeros"),
        (lambda t: t.replace("\nphase 1\n", "\nphase 0\n"), "numbered from 1"),
        (lambda t: t.replace("cosigns", "cosigns "), "one space"),
        (lambda t: t.replace("\ncase goldenCASE", "\ncase gold/CASE"), "case id"),
        (lambda t: t.replace("evidence-ledger leaf v2", "evidence-ledger leaf v1"), "header"),
        (lambda t: t.replace("received", "sha256 " + "0" * 64 + "\nreceived"), "lines 2-4"),
    ],
)
def test_leaf_v2_parser_refuses_with_a_reason(edit: Any, words: str) -> None:
    raw = base64.b64decode(golden_v2("v2-cosign")["evidence"]["leaf"]).decode()
    with pytest.raises(FormatError) as e:
        LeafV2.from_bytes(edit(raw).encode())
    assert words in e.value.reason


def test_digest_lines_sort_and_unknown_algorithms_are_accepted() -> None:
    received = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    leaf = LeafV2("x" * 22, DIGEST, received, (("sm3", b"\x01" * 32), ("zz-future", b"\x02" * 48)))
    raw = leaf.to_bytes()
    assert b"\nsm3 " + b"01" * 32 + b"\nzz-future " + b"02" * 48 + b"\n" in raw
    assert LeafV2.from_bytes(raw) == leaf
    with pytest.raises(FormatError, match="sorted"):
        LeafV2.from_bytes(raw.replace(b"sm3", b"zzz"))
    with pytest.raises(FormatError, match="32 bytes"):
        LeafV2("x" * 22, DIGEST, received, (("sm3", b"\x01" * 33),))


# --- X.509 chains made with openssl ----------------------------------------------------------------------------

EXT = """[ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
[ee]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
"""


def openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr


class Pki:
    """root CA -> intermediate CA -> depositor, made with the openssl command line in ``path``."""

    def __init__(self, path: Path, name: str = "Test", depositor_days: int = 365, key: str = "ec") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / "ext.cnf").write_text(EXT)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        openssl("req", "-x509", *ec, "-nodes", "-keyout", "root.key", "-out", "root.pem", "-days", "3650",
                "-subj", f"/CN={name} Root CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=path)  # fmt: skip
        openssl("req", *ec, "-nodes", "-keyout", "int.key", "-out", "int.csr", "-subj", f"/CN={name} Intermediate CA",
                cwd=path)  # fmt: skip
        openssl("x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
                "-out", "int.pem", "-days", "1825", "-extfile", "ext.cnf", "-extensions", "ca", cwd=path)  # fmt: skip
        dep_key = ["-newkey", "rsa:2048"] if key == "rsa" else ec
        openssl("req", *dep_key, "-nodes", "-keyout", "dep.key", "-out", "dep.csr", "-utf8",
                "-subj", f"/C=CN/O={name} 示例公司/CN=张三", cwd=path)  # fmt: skip
        openssl("x509", "-req", "-in", "dep.csr", "-CA", "int.pem", "-CAkey", "int.key", "-CAcreateserial",
                "-out", "dep.pem", "-days", str(depositor_days), "-extfile", "ext.cnf", "-extensions", "ee",
                cwd=path)  # fmt: skip

    def cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.path / f"{name}.pem").read_bytes())

    def attest(self, claims: list[str], signed: dt.datetime, chain: list[str]) -> bytes:
        """Sign the statement with ``openssl dgst`` (not with our code) and assemble the attestation by hand."""
        stmt = attestation.build_statement(claims, signed)
        (self.path / "stmt").write_bytes(stmt)
        openssl("dgst", "-sha256", "-sign", "dep.key", "-out", "stmt.sig", "stmt", cwd=self.path)
        key = load_pem_private_key((self.path / "dep.key").read_bytes(), None)
        algorithm = "rsa-pkcs1-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa-p256-sha256"
        block = f"algorithm {algorithm}\n" + "".join(
            f"certificate {base64.b64encode(self.cert(c).public_bytes(Encoding.DER)).decode()}\n" for c in chain
        )
        sig = base64.b64encode((self.path / "stmt.sig").read_bytes()).decode()
        return stmt + b"\n" + f"{block}signature {sig}\n".encode()


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def _claims() -> list[str]:
    leaf = LeafV2(
        "openssl-test-AAAAAAAAAA",
        DIGEST,
        dt.datetime.now(dt.UTC),
        label_sha256=text_sha256("合同"),
        case=CaseRef("case-AAAAAAAAAAAAAAAAAA", 1, text_sha256("签约")),
    )
    return leaf.claim_lines()


@needs_openssl
@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_openssl_chain_root_intermediate_depositor_is_verified(tmp_path: Path, key: str) -> None:
    pki = Pki(tmp_path / "pki", key=key)
    now = dt.datetime.now(dt.UTC)
    raw = pki.attest(_claims(), now, ["dep", "int"])
    depositor = attestation.check_attestation(raw, _claims(), now, [pki.cert("root")])
    assert depositor.kind == "x509" and depositor.ca_verified is True
    assert depositor.identity == "CN=张三,O=Test 示例公司,C=CN"
    # the root in the attestation changes nothing: trust comes from the verifier's CAs only
    raw = pki.attest(_claims(), now, ["dep", "int", "root"])
    assert attestation.check_attestation(raw, _claims(), now, [pki.cert("root")]).ca_verified is True
    # without trusted CAs the signature is still checked, the path is not
    assert attestation.check_attestation(raw, _claims(), now, []).ca_verified is None


@needs_openssl
def test_openssl_chain_without_the_intermediate_fails_clearly(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    now = dt.datetime.now(dt.UTC)
    raw = pki.attest(_claims(), now, ["dep"])
    with pytest.raises(AttestationError) as e:
        attestation.check_attestation(raw, _claims(), now, [pki.cert("root")])
    assert e.value.check == "8d"
    assert "the issuer 'CN=Test Intermediate CA' of 'CN=张三,O=Test 示例公司,C=CN' is neither trusted nor among" in (
        e.value.reason
    )
    assert "intermediate CA certificate is missing" in e.value.reason


@needs_openssl
def test_openssl_chain_expired_at_signing_time_fails_clearly(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki", depositor_days=1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)  # signed after the depositor certificate expired
    raw = pki.attest(_claims(), later, ["dep", "int"])
    with pytest.raises(AttestationError) as e:
        attestation.check_attestation(raw, _claims(), later, [pki.cert("root")])
    assert e.value.check == "8d"
    assert "the certificate 'CN=张三,O=Test 示例公司,C=CN' has expired: valid until" in e.value.reason
    assert f"signed at {format_time(later)}" in e.value.reason


@needs_openssl
def test_openssl_chain_from_another_ca_fails_clearly(tmp_path: Path) -> None:
    ours = Pki(tmp_path / "ours", name="Trusted")
    theirs = Pki(tmp_path / "theirs", name="Other")
    twin = Pki(tmp_path / "twin", name="Trusted")  # same subject names as ours, other keys
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)  # openssl's notBefore has whole seconds
    raw = theirs.attest(_claims(), now, ["dep", "int", "root"])
    with pytest.raises(AttestationError) as e:
        attestation.check_attestation(raw, _claims(), now, [ours.cert("root")])
    assert e.value.check == "8d"
    assert "ends at the root 'CN=Other Root CA', which is not a trusted depositor CA" in e.value.reason
    # same subject names, other keys: a look-alike CA is refused by the signature check of the path
    raw = twin.attest(_claims(), now, ["dep", "int"])
    with pytest.raises(AttestationError) as e:
        attestation.check_attestation(raw, _claims(), now, [ours.cert("root")])
    assert e.value.check == "8d" and "does not validate" in e.value.reason


@needs_openssl
def test_openssl_signed_statement_for_other_data_fails_8b(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    now = dt.datetime.now(dt.UTC)
    other = _claims()
    other[0] = "sha256 " + hashlib.sha256(b"other data").hexdigest()
    raw = pki.attest(other, now, ["dep", "int"])
    with pytest.raises(AttestationError) as e:
        attestation.check_attestation(raw, _claims(), now, [pki.cert("root")])
    assert e.value.check == "8b" and "does not match the leaf" in e.value.reason
