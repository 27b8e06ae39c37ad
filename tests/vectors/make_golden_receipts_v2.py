"""Make the golden v2 receipts in tests/vectors/receipts-v2/ WITHOUT any of Evidence Ledger's own code.

An independent implementation of SPEC §2.1 (leaf v2), §2.2 (attestation bytes) and §6.1 (receipt v2), written
from the SPEC text alone: the Merkle trees come from pymerkle (RFC 6962 mode), signatures and certificates from
`cryptography` directly, and every byte string is written out here by hand. It writes valid receipts (all under
the same published test key as the v1 golden receipts) and, under ``tampered/``, one receipt per v2 check that is
consistent in every other respect, so that it fails at exactly that check. ``manifest.json`` names the step each
tampered receipt must fail at.

Keys are derived from published seeds (they protect nothing); the RSA key and the ECDSA signatures are random, so
a re-run rewrites the files with other, equally valid bytes.

    .venv/bin/python tests/vectors/make_golden_receipts_v2.py     # rewrites tests/vectors/receipts-v2/
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pymerkle import InmemoryTree

OUT = Path(__file__).parent / "receipts-v2"
ORIGIN = "example.org/evidence-ledger-test"
# The same log key as the v1 golden receipts (tests/vectors/receipts/trusted.vkey).
LOG_SEED = hashlib.sha256(b"evidence-ledger golden receipts test key (public, protects nothing)").digest()
CONTRACT = b"CONTRACT OF SALE\nThe seller sells the buyer one (1) bicycle for 100 CNY.\n"
DIGEST = hashlib.sha256(CONTRACT).digest()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def seed(name: str) -> bytes:
    return hashlib.sha256(
        b"evidence-ledger golden v2 test key " + name.encode() + b" (public, protects nothing)"
    ).digest()


# --- SPEC §2.1 / §2.2 bytes, by hand ---------------------------------------------------------------------------


def claim_lines(
    digest: bytes,
    *,
    digests: dict[str, str] | None = None,
    label: str | None = None,
    case: tuple[str, int, str] | None = None,
    cosigns: str | None = None,
) -> str:
    """The lines a leaf and its statement share: sha256, digest lines, label, case, cosigns."""
    text = f"sha256 {digest.hex()}\n"
    for name in sorted(digests or {}):
        text += f"{name} {(digests or {})[name]}\n"
    if label is not None:
        text += f"label-sha256 {sha(label.encode())}\n"
    if case is not None:
        text += f"case {case[0]}\nphase {case[1]}\nphase-name-sha256 {sha(case[2].encode())}\n"
    if cosigns is not None:
        text += f"cosigns {cosigns}\n"
    return text


def leaf_v2(eid: str, received: str, claims: str, attestation: bytes | None, header: str = "v2") -> bytes:
    first, rest = claims.split("\n", 1)  # the sha256 line comes before `received`, the others after it
    text = f"evidence-ledger leaf {header}\nid {eid}\n{first}\nreceived {received}\n{rest}"
    if attestation is not None:
        text += f"attestation {sha(attestation)}\n"
    return text.encode()


def statement(claims: str, signed: str) -> bytes:
    return f"evidence-ledger attestation v1\n{claims}signed {signed}\n".encode()


class Depositor:
    """A signing party: a bare Ed25519 key, or a private key with its certificate chain."""

    def __init__(self, algorithm: str, key: Any, chain: list[x509.Certificate] | None = None) -> None:
        self.algorithm, self.key, self.chain = algorithm, key, chain

    def sign(self, message: bytes) -> bytes:
        if self.algorithm == "ed25519":
            return bytes(self.key.sign(message))
        if self.algorithm == "ecdsa-p256-sha256":
            return bytes(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        if self.algorithm == "rsa-pkcs1-sha256":
            return bytes(self.key.sign(message, padding.PKCS1v15(), hashes.SHA256()))
        if self.algorithm == "rsa-pss-sha256":
            return bytes(self.key.sign(message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()))
        raise ValueError(self.algorithm)

    def attest(self, stmt: bytes, *, algorithm: str | None = None, signature: bytes | None = None) -> bytes:
        block = f"algorithm {algorithm or self.algorithm}\n"
        if self.chain is None:
            block += f"key {b64(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))}\n"
        else:
            block += "".join(f"certificate {b64(c.public_bytes(Encoding.DER))}\n" for c in self.chain)
        sig = self.sign(stmt) if signature is None else signature
        return stmt + b"\n" + f"{block}signature {b64(sig)}\n".encode()


# --- certificates (made with `cryptography`'s builder; tests/unit makes others with openssl) ----------------------


def t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)


def ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    return ec.derive_private_key(int.from_bytes(seed(name), "big") % (order - 1) + 1, ec.SECP256R1())


def cert(
    subject: str,
    key: Any,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    not_before: str = "2026-01-01T00:00:00",
    not_after: str = "2036-01-01T00:00:00",
    serial: int = 1,
) -> x509.Certificate:
    subject_name = x509.Name.from_rfc4514_string(subject)
    issuer_name, issuer_key = (
        (subject_name, key) if issuer is None else (x509.Name.from_rfc4514_string(issuer[0]), issuer[1])
    )
    b = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(t(not_before))
        .not_valid_after(t(not_after))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return b.sign(issuer_key, hashes.SHA256())


ROOT = "CN=Evidence Ledger Test Depositor Root CA,O=Example Test PKI,C=CN"
INTERMEDIATE = "CN=Evidence Ledger Test Depositor Intermediate CA,O=Example Test PKI,C=CN"
OTHER_ROOT = "CN=Some Other Root CA,O=Another Test PKI,C=CN"


# --- trees and receipts ---------------------------------------------------------------------------------------


def tree(items: list[bytes]) -> InmemoryTree:
    tr = InmemoryTree(algorithm="sha256")  # RFC 6962 hashing: 0x00 leaf prefix, 0x01 node prefix
    for item in items:
        tr.append_entry(item)
    return tr


def inclusion(tr: InmemoryTree, index: int, size: int) -> list[str]:
    # pymerkle counts leaves from 1 and starts its path with the leaf's own hash: RFC 9162 wants neither.
    path = tr.prove_inclusion(index + 1, size).serialize()["path"]
    return [b64(bytes.fromhex(h)) for h in path[1:]]


def entry_bytes(seq: int, size: int, root: bytes, sealed: str) -> bytes:
    return f"evidence-ledger batch v1\nseq {seq}\nsize {size}\nroot {b64(root)}\nsealed {sealed}\n".encode()


class Ledger:
    def __init__(self) -> None:
        key = Ed25519PrivateKey.from_private_bytes(LOG_SEED)
        self.key = key
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_hash = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + pub).digest()[:4]

    def sign(self, text: bytes) -> str:
        sig = self.key.sign(text)
        return (text + b"\n" + f"\u2014 {ORIGIN} {b64(self.key_hash + sig)}\n".encode()).decode()

    def seal(self, leaves: list[bytes], sealed: str) -> list[dict[str, Any]]:
        """Seal ``leaves`` as batch 1 of a two-entry ledger; return each leaf's batch and ledger parts."""
        bt = tree(leaves)
        broot = bytes(bt.get_root(len(leaves)))
        entries = [
            entry_bytes(0, 3, hashlib.sha256(b"\x00v2 batch0").digest(), "2026-11-28T00:00:00.000000Z"),
            entry_bytes(1, len(leaves), broot, sealed),
        ]
        lt = tree(entries)
        checkpoint = self.sign(f"{ORIGIN}\n2\n{b64(bytes(lt.get_root(2)))}\n".encode())
        ledger = {"entry": b64(entries[1]), "proof": inclusion(lt, 1, 2), "checkpoint": checkpoint}
        return [
            {
                "batch": {
                    "seq": 1,
                    "size": len(leaves),
                    "index": i,
                    "root": b64(broot),
                    "proof": inclusion(bt, i, len(leaves)),
                },
                "ledger": ledger,
            }
            for i in range(len(leaves))
        ]


class Deposit:
    """One v2 deposit: its leaf and the receipt's evidence object."""

    def __init__(
        self,
        eid: str,
        received: str,
        *,
        digest: bytes = DIGEST,
        digests: dict[str, str] | None = None,
        label: str | None = None,
        case: tuple[str, int, str] | None = None,
        cosigns: str | None = None,
        by: Depositor | None = None,
        signed: str | None = None,
        attestation: bytes | None = None,
        statement_claims: str | None = None,
        header: str = "v2",
    ) -> None:
        claims = claim_lines(digest, digests=digests, label=label, case=case, cosigns=cosigns)
        if attestation is None and by is not None:
            attestation = by.attest(statement(statement_claims or claims, signed or received))
        self.leaf = leaf_v2(eid, received, claims, attestation, header)
        self.evidence: dict[str, Any] = {
            "id": eid,
            "sha256": digest.hex(),
            "received_at": received,
            "leaf": b64(self.leaf),
        }
        if digests:
            self.evidence["digests"] = dict(digests)
        if label is not None:
            self.evidence["label"] = label
        if case is not None:
            self.evidence["case"] = {"id": case[0], "phase": case[1], "phase_name": case[2]}
        if cosigns is not None:
            self.evidence["cosigns"] = cosigns
        if attestation is not None:
            self.evidence["attestation"] = b64(attestation)


def receipts(ledger: Ledger, deposits: list[Deposit], sealed: str) -> list[dict[str, Any]]:
    parts = ledger.seal([d.leaf for d in deposits], sealed)
    vkey = f"{ORIGIN}+{ledger.key_hash.hex()}+" + b64(
        bytes([1]) + ledger.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return [
        {"format": "evidence-receipt/v2", "evidence": d.evidence, **p, "timestamps": [], "keys": [vkey]}
        for d, p in zip(deposits, parts, strict=True)
    ]


def make() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], bytes]:
    ledger = Ledger()
    alice = Depositor("ed25519", Ed25519PrivateKey.from_private_bytes(seed("alice")))
    bob = Depositor("ed25519", Ed25519PrivateKey.from_private_bytes(seed("bob")))
    root_key, int_key, other_key = ec_key("root"), ec_key("intermediate"), ec_key("other root")
    root = cert(ROOT, root_key, None, ca=True, not_after="2046-01-01T00:00:00")
    inter = cert(INTERMEDIATE, int_key, (ROOT, root_key), ca=True, serial=2)
    other_root = cert(OTHER_ROOT, other_key, None, ca=True)
    ec_dep_key = ec_key("depositor ecdsa")
    ec_dep = cert("CN=张三,O=示例科技有限公司,C=CN", ec_dep_key, (INTERMEDIATE, int_key), ca=False, serial=3)
    rsa_dep_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_dep = cert(
        "CN=Example Trading Co. Ltd.,O=Example Trading,C=CN", rsa_dep_key, (INTERMEDIATE, int_key), ca=False, serial=4
    )
    expired_dep = cert(
        "CN=李四,C=CN", ec_dep_key, (INTERMEDIATE, int_key), ca=False, serial=5, not_after="2026-06-30T00:00:00"
    )
    other_dep = cert("CN=王五,C=CN", ec_dep_key, (OTHER_ROOT, other_key), ca=False, serial=6)
    carol = Depositor("ecdsa-p256-sha256", ec_dep_key, [ec_dep, inter])
    dave = Depositor("rsa-pkcs1-sha256", rsa_dep_key, [rsa_dep, inter])
    erin = Depositor("rsa-pss-sha256", rsa_dep_key, [rsa_dep, inter, root])

    case = ("goldenCASE-000000000001", 1, "签约 (signing)")
    case2 = ("goldenCASE-000000000001", 2, "交付 / delivery")
    label = "买卖合同 contract-of-sale.txt"
    sm3 = hashlib.new("sm3", CONTRACT).hexdigest()

    good: dict[str, Deposit] = {
        "v2-unattested": Deposit("goldenV2-unattested-AAAA", "2026-11-28T16:13:35.000001Z", label=label),
        "v2-bare": Deposit("goldenV2-bare-AAAAAAAAAA", "2026-11-28T16:13:35.000002Z"),
        "v2-ed25519-case": Deposit(
            "goldenV2-alice-AAAAAAAAA",
            "2026-11-28T16:13:35.000003Z",
            label=label,
            case=case,
            by=alice,
            signed="2026-11-28T16:13:30.000000Z",
        ),
        "v2-cosign": Deposit(
            "goldenV2-bob-AAAAAAAAAAA",
            "2026-11-28T16:13:35.000004Z",
            label=label,
            case=case,
            cosigns="goldenV2-alice-AAAAAAAAA",
            by=bob,
            signed="2026-11-28T16:13:34.500000Z",
        ),
        "v2-x509-ecdsa": Deposit(
            "goldenV2-carol-AAAAAAAAA",
            "2026-11-28T16:13:35.000005Z",
            label=label,
            case=case2,
            by=carol,
            signed="2026-11-28T16:13:31.000000Z",
        ),
        "v2-x509-rsa": Deposit(
            "goldenV2-dave-AAAAAAAAAA",
            "2026-11-28T16:13:35.000006Z",
            label="RSA 签名",
            by=dave,
            signed="2026-11-28T16:13:32.000000Z",
        ),
        "v2-x509-rsa-pss": Deposit(
            "goldenV2-erin-AAAAAAAAAA",
            "2026-11-28T16:13:35.000007Z",
            by=erin,
            signed="2026-11-28T16:13:33.000000Z",
        ),
        "v2-sm3-digest": Deposit(
            "goldenV2-sm3-AAAAAAAAAAA", "2026-11-28T16:13:35.000008Z", digests={"sm3": sm3}, label=label
        ),
    }
    valid = dict(zip(good, receipts(ledger, list(good.values()), "2026-11-28T16:13:36.000000Z"), strict=True))

    # --- tampered: each consistent in every respect but one check ---------------------------------------------
    manifest: dict[str, Any] = {}
    tampered: dict[str, Any] = {}
    received = "2026-11-28T17:00:00.000000Z"

    def add(name: str, step: int, check: str, doc: dict[str, Any], trust_ca: bool = False) -> None:
        tampered[name] = doc
        manifest[name] = {"step": step, "check": check, "trust_depositor_ca": trust_ca}

    def json_edit(base: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        doc = json.loads(json.dumps(valid[base]))
        edit(doc)
        return doc

    def sealed_alone(dep: Deposit) -> dict[str, Any]:
        return receipts(ledger, [dep], "2026-11-28T17:00:01.000000Z")[0]

    add("leaf-version-v3", 2, "leaf version", sealed_alone(Deposit("tamperV3-AAAAAAAAAAAAAAA", received, header="v3")))
    add(
        "digests-differ", 2, "2a", json_edit("v2-sm3-digest", lambda d: d["evidence"].update(digests={"sm3": "0" * 64}))
    )
    add("label-changed", 2, "2b", json_edit("v2-ed25519-case", lambda d: d["evidence"].update(label=label + " (v2)")))
    add(
        "label-added",
        2,
        "2b",
        json_edit("v2-bare", lambda d: d["evidence"].update(label="a label the ledger never saw")),
    )
    add(
        "phase-name-changed",
        2,
        "2c",
        json_edit("v2-ed25519-case", lambda d: d["evidence"]["case"].update(phase_name="付款 (payment)")),
    )
    add("phase-changed", 2, "2c", json_edit("v2-ed25519-case", lambda d: d["evidence"]["case"].update(phase=2)))
    add("cosigns-dropped", 2, "2d", json_edit("v2-cosign", lambda d: d["evidence"].pop("cosigns")))

    def swap_attestation(d: dict[str, Any]) -> None:
        d["evidence"]["attestation"] = valid["v2-cosign"]["evidence"]["attestation"]

    add("attestation-swapped", 2, "2e", json_edit("v2-ed25519-case", swap_attestation))

    stmt = statement(claim_lines(DIGEST, label=label), "2026-11-28T16:59:59.000000Z")
    add(
        "attestation-unknown-algorithm",
        8,
        "8a",
        sealed_alone(
            Deposit("tamperAlg-AAAAAAAAAAAAAA", received, label=label, attestation=alice.attest(stmt, algorithm="sm9"))
        ),
    )
    add(
        "attestation-no-empty-line",
        8,
        "8a",
        sealed_alone(
            Deposit(
                "tamperNoBlank-AAAAAAAAAA",
                received,
                label=label,
                attestation=alice.attest(stmt).replace(b"\n\nalgorithm", b"\nalgorithm"),
            )
        ),
    )
    add(
        "statement-other-label",
        8,
        "8b",
        sealed_alone(
            Deposit(
                "tamperStmt-AAAAAAAAAAAAA",
                received,
                label=label,
                by=alice,
                signed="2026-11-28T16:59:59.000000Z",
                statement_claims=claim_lines(DIGEST, label="another label"),
            )
        ),
    )
    add(
        "statement-other-digest",
        8,
        "8b",
        sealed_alone(
            Deposit(
                "tamperStmtDigest-AAAAAAA",
                received,
                by=alice,
                signed="2026-11-28T16:59:59.000000Z",
                statement_claims=claim_lines(hashlib.sha256(b"other data").digest()),
            )
        ),
    )
    add(
        "signed-too-early",
        8,
        "8b",
        sealed_alone(Deposit("tamperEarly-AAAAAAAAAAAA", received, by=alice, signed="2026-11-27T16:59:59.999999Z")),
    )
    add(
        "signed-too-late",
        8,
        "8b",
        sealed_alone(Deposit("tamperLate-AAAAAAAAAAAAA", received, by=alice, signed="2026-11-28T17:05:00.000001Z")),
    )
    bad_sig = bytearray(alice.sign(stmt))
    bad_sig[10] ^= 1
    add(
        "signature-invalid",
        8,
        "8c",
        sealed_alone(
            Deposit(
                "tamperSig-AAAAAAAAAAAAAA",
                received,
                label=label,
                attestation=alice.attest(stmt, signature=bytes(bad_sig)),
            )
        ),
    )
    add(
        "signature-by-other-key",
        8,
        "8c",
        sealed_alone(
            Deposit(
                "tamperOtherKey-AAAAAAAAA",
                received,
                label=label,
                attestation=alice.attest(stmt, signature=bob.sign(stmt)),
            )
        ),
    )
    add(
        "algorithm-does-not-fit-key",
        8,
        "8c",
        sealed_alone(
            Deposit(
                "tamperAlgKey-AAAAAAAAAAA",
                received,
                label=label,
                attestation=carol.attest(stmt, algorithm="rsa-pkcs1-sha256"),
            )
        ),
    )
    signed = "2026-11-28T16:59:00.000000Z"
    add(
        "x509-intermediate-missing",
        8,
        "8d",
        sealed_alone(
            Deposit(
                "tamperNoInt-AAAAAAAAAAAA",
                received,
                by=Depositor("ecdsa-p256-sha256", ec_dep_key, [ec_dep]),
                signed=signed,
            )
        ),
        True,
    )
    add(
        "x509-expired",
        8,
        "8d",
        sealed_alone(
            Deposit(
                "tamperExpired-AAAAAAAAAA",
                received,
                by=Depositor("ecdsa-p256-sha256", ec_dep_key, [expired_dep, inter]),
                signed=signed,
            )
        ),
        True,
    )
    add(
        "x509-other-ca",
        8,
        "8d",
        sealed_alone(
            Deposit(
                "tamperOtherCA-AAAAAAAAAA",
                received,
                by=Depositor("ecdsa-p256-sha256", ec_dep_key, [other_dep, other_root]),
                signed=signed,
            )
        ),
        True,
    )
    return valid, tampered, manifest, root.public_bytes(serialization.Encoding.PEM)


def main() -> None:
    valid, tampered, manifest, ca_pem = make()
    OUT.mkdir(exist_ok=True)
    (OUT / "tampered").mkdir(exist_ok=True)
    (OUT / "depositor-ca.pem").write_bytes(ca_pem)
    for name, doc in valid.items():
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    for name, doc in tampered.items():
        (OUT / "tampered" / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (OUT / "tampered" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(valid)} receipts and {len(tampered)} tampered receipts to {OUT}")


if __name__ == "__main__":
    main()
