"""The offline verifier against golden receipts made by an independent implementation, and one tampered
receipt per SPEC §6 step, each failing at exactly that step."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.errors import UnreadableReceipt
from service.core.note import Signer, Verifier, parse_vkeys
from service.core.receipt import load_json
from service.core.verify import verify_receipt

GOLDEN = Path(__file__).parent.parent / "vectors" / "receipts"
CONTRACT = (GOLDEN / "contract.txt").read_bytes()
DIGEST = hashlib.sha256(CONTRACT).digest()
TRUSTED = parse_vkeys((GOLDEN / "trusted.vkey").read_text())
NAMES = ["batch5-index2-ledger3", "single", "batch7-index6-ledger6"]


def golden(name: str = "batch5-index2-ledger3") -> dict[str, Any]:
    doc = load_json((GOLDEN / f"{name}.json").read_bytes())
    assert isinstance(doc, dict)
    return doc


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s)


@pytest.mark.parametrize("name", NAMES)
def test_golden_receipt_from_independent_implementation_is_valid(name: str) -> None:
    result = verify_receipt(golden(name), sha256=DIGEST, trusted_keys=TRUSTED)
    assert result.valid, result.to_json()
    assert result.step is None and result.reason is None
    assert [c.step for c in result.checks] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert result.statement is not None
    assert result.statement.startswith(
        f"The file given (SHA-256 {DIGEST.hex()}) was sealed in the ledger of "
        "example.org/evidence-ledger-test no later than 2026-11-"
    )


def test_without_a_file_step_1_is_reported_as_not_checked() -> None:
    result = verify_receipt(golden(), trusted_keys=TRUSTED)
    assert result.valid
    step1 = [c for c in result.checks if c.step == 1][0]
    assert not step1.checked and "no file" in step1.detail
    assert result.to_json()["checks"][1]["checked"] is False
    assert result.statement is not None and result.statement.startswith(f"This SHA-256 ({DIGEST.hex()})")


def test_receipt_is_never_valid_on_the_strength_of_its_own_keys() -> None:
    doc = golden()
    other = Signer.generate("example.org/evidence-ledger-test").verifier
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=[other])
    assert not result.valid and result.step == 6
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=[])
    assert not result.valid and result.step == 6
    assert "no trusted key" in (result.reason or "")


# --- one tampered receipt per step ---------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


def _edit_b64(path: str, edit: Callable[[bytes], bytes]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[last] = b64(edit(unb64(node[last])))

    return mutate


def _flip_proof(path: str, i: int) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        section, field = path.split(".")
        h = bytearray(unb64(doc[section][field][i]))
        h[7] ^= 0x01
        doc[section][field][i] = b64(bytes(h))

    return mutate


def _replace_in(path: str, old: bytes, new: bytes) -> Mutation:
    return _edit_b64(path, lambda b: b.replace(old, new, 1))


def _checkpoint_edit(edit: Callable[[str], str]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["ledger"]["checkpoint"] = edit(doc["ledger"]["checkpoint"])

    return mutate


def _flip_signature(note: str) -> str:
    text, sigline = note.rsplit("\n\n", 1)
    dash, name, sig = sigline.rstrip("\n").split(" ")
    raw = bytearray(unb64(sig))
    raw[10] ^= 0x40
    return f"{text}\n\n{dash} {name} {b64(bytes(raw))}\n"


def _claim_smaller_batch(doc: dict[str, Any]) -> None:
    # RFC 9162 inclusion proofs do not pin the tree size: leaf 0 of a 4-leaf tree has the same audit path as leaf 0
    # "in a 3-leaf tree" whose root is the 4-leaf root. Only the ledger entry's size (step 4) catches this.
    def node(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + a + b).digest()

    leaf0 = hashlib.sha256(b"\x00" + unb64(doc["evidence"]["leaf"])).digest()
    l1, l2, l3 = (hashlib.sha256(b"\x00" + x).digest() for x in (b"l1", b"l2", b"l3"))
    root4 = node(node(leaf0, l1), node(l2, l3))
    doc["batch"].update(index=0, size=3, root=b64(root4), proof=[b64(l1), b64(node(l2, l3))])
    lines = unb64(doc["ledger"]["entry"]).decode().split("\n")
    lines[2], lines[3] = "size 4", f"root {b64(root4)}"
    doc["ledger"]["entry"] = b64("\n".join(lines).encode())


TAMPERED: list[tuple[str, Mutation, int, str]] = [
    ("wrong format", _set("format", "evidence-receipt/v3"), 0, "format"),
    ("v1 receipt called v2", _set("format", "evidence-receipt/v2"), 2, "carries a v2 leaf; this one is a v1 leaf"),
    (
        "leaf of an unknown version",
        _replace_in("evidence.leaf", b"evidence-ledger leaf v1", b"evidence-ledger leaf v7"),
        2,
        "version v7; this verifier reads v1 and v2",
    ),
    ("format missing", _delete("format"), 0, "format"),
    ("format not a string", _set("format", 1), 0, "must be a string"),
    ("evidence sha256 of another file", _set("evidence.sha256", "00" * 32), 1, "the receipt is for 0000"),
    ("evidence missing", _delete("evidence"), 1, "no 'evidence.sha256'"),
    ("leaf for another id", _set("evidence.id", "someone-else-AAAAAAAAAA"), 2, "evidence id"),
    ("leaf received time changed", _replace_in("evidence.leaf", b"16:13:35.123456", b"16:13:35.123457"), 2, "received"),
    ("received_at changed", _set("evidence.received_at", "2026-11-28T16:13:35.123457Z"), 2, "received"),
    (
        "leaf with upper-case hex",
        _edit_b64("evidence.leaf", lambda b: b.replace(DIGEST.hex().encode(), DIGEST.hex().upper().encode())),
        2,
        "",
    ),
    ("leaf not base64", _set("evidence.leaf", "not base64!"), 2, "base64"),
    ("leaf with trailing bytes", _edit_b64("evidence.leaf", lambda b: b + b"x"), 2, ""),
    ("flipped bit in batch proof", _flip_proof("batch.proof", 1), 3, "batch root"),
    ("batch index + 1", _set("batch.index", 3), 3, ""),
    ("batch size doubled", _set("batch.size", 10), 3, ""),
    ("batch proof hash dropped", lambda d: d["batch"]["proof"].pop(), 3, ""),
    ("batch proof hash too short", lambda d: d["batch"]["proof"].__setitem__(0, b64(b"x" * 31)), 3, "32 bytes"),
    ("batch index negative", _set("batch.index", -1), 3, "negative"),
    ("batch index boolean", _set("batch.index", True), 3, "integer"),
    ("batch root changed", _set("batch.root", b64(b"\x00" * 32)), 3, ""),
    ("size not pinned by the proof", _claim_smaller_batch, 4, "4 leaves"),
    ("batch seq changed", _set("batch.seq", 2), 4, "number 1"),
    (
        "entry sealed before received",
        _replace_in("ledger.entry", b"sealed 2026-11-28T16:13:36.000000Z", b"sealed 2026-11-28T16:13:35.000000Z"),
        4,
        "before",
    ),
    ("entry not an entry", _set("ledger.entry", b64(b"hello\n")), 4, "not a valid v1 entry"),
    ("flipped bit in ledger proof", _flip_proof("ledger.proof", 0), 5, "checkpoint root"),
    ("ledger proof missing", _delete("ledger.proof"), 5, "ledger.proof"),
    (
        "checkpoint root changed",
        _checkpoint_edit(lambda n: n.replace(n.split("\n")[2], b64(b"\x01" * 32), 1)),
        5,
        "checkpoint root",
    ),
    # the inclusion proof of entry 1 is the same in logs of 3 and 4 entries: only the signature pins the size
    ("checkpoint size changed", _checkpoint_edit(lambda n: n.replace("\n3\n", "\n4\n", 1)), 6, "signature"),
    # step 5 reads only the checkpoint's first three lines; the note's structure is step 6 (SPEC §6)
    ("checkpoint without blank line", _checkpoint_edit(lambda n: n.replace("\n\n", "\n")), 6, "blank line"),
    ("checkpoint with two lines", _checkpoint_edit(lambda n: "\n".join(n.split("\n")[:2])), 5, "three lines"),
    ("checkpoint signature flipped", _checkpoint_edit(_flip_signature), 6, "signature"),
    ("checkpoint origin changed", _checkpoint_edit(lambda n: n.replace("example.org", "example.com", 1)), 6, "origin"),
    ("checkpoint with en dash", _checkpoint_edit(lambda n: n.replace("\u2014", "\u2013")), 6, ""),
    ("timestamps not a list", _set("timestamps", {"type": "rfc3161"}), 7, "must be a list"),
    ("timestamp token not base64", _set("timestamps", [{"type": "rfc3161", "token": "@@@"}]), 7, "base64"),
]


@pytest.mark.parametrize(("mutate", "step", "words"), [t[1:] for t in TAMPERED], ids=[t[0] for t in TAMPERED])
def test_tampered_receipt_fails_at_its_step(mutate: Mutation, step: int, words: str) -> None:
    doc = copy.deepcopy(golden())
    mutate(doc)
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED)
    assert not result.valid
    assert result.step == step, result.to_json()
    assert words in (result.reason or "")
    assert result.checks[-1].step == step and not result.checks[-1].ok
    assert [c.step for c in result.checks] == list(range(step + 1))
    assert result.statement is None


def test_wrong_file_names_both_digests() -> None:
    other = hashlib.sha256(b"another file").digest()
    result = verify_receipt(golden(), sha256=other, trusted_keys=TRUSTED)
    assert result.step == 1
    assert result.reason == f"the file's SHA-256 is {other.hex()}; the receipt is for {DIGEST.hex()}"


def _self_signed_ca() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unrelated Test TSA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_garbage_token_fails_step_7_when_a_tsa_is_trusted() -> None:
    doc = golden()
    doc["timestamps"] = [{"type": "rfc3161", "token": b64(b"\x30\x03\x02\x01\x01")}]
    assert verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED).valid  # no TSA trusted: not checked
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED, tsa_roots=[_self_signed_ca()])
    assert not result.valid and result.step == 7


def test_unknown_token_type_is_not_checked_and_not_fatal() -> None:
    doc = golden()
    doc["timestamps"] = [{"type": "opentimestamps", "proof": "..."}]
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED)
    assert result.valid
    assert any(not c.checked and "unknown token type" in c.detail for c in result.checks)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format": "evidence-receipt/v1", "format": "evidence-receipt/v1"}',
        b'{"x": NaN}',
        b'{"x": Infinity}',
        b'{"x": "\xff"}',
        b"\xef\xbb\xbf{}",
        b"",
        b"{",
        b"[1, 2",
    ],
)
def test_unreadable_bytes_are_rejected_before_verification(raw: bytes) -> None:
    with pytest.raises(UnreadableReceipt):
        load_json(raw)


@pytest.mark.parametrize("doc", [None, [], "receipt", 42, {}, {"format": None}])
def test_json_that_is_not_a_receipt_is_invalid_at_step_0(doc: Any) -> None:
    result = verify_receipt(doc, trusted_keys=TRUSTED)
    assert not result.valid and result.step == 0


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**70) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_field_replacement_never_crashes_and_is_never_valid_unless_unchanged(data: st.DataObject) -> None:
    doc = golden()
    paths = _paths(doc)
    path = data.draw(st.sampled_from(paths))
    value = data.draw(json_values)
    node = doc
    for p in path[:-1]:
        node = node[p]
    before = copy.deepcopy(node[path[-1]])
    node[path[-1]] = value
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED)
    if result.valid:
        # only changes that do not alter what is proven can keep a receipt valid: hints and unknown fields
        assert path[0] in {"keys", "timestamps"} or value == before, (path, value)


# --- the command line ---------------------------------------------------------------------------


def _evidence(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_valid_receipt_exit_0_with_statement(tmp_path: Path) -> None:
    receipt = GOLDEN / "batch5-index2-ledger3.json"
    r = _evidence("verify", str(receipt), str(GOLDEN / "contract.txt"), "--key", str(GOLDEN / "trusted.vkey"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID." in r.stdout and "was sealed in the ledger of example.org/evidence-ledger-test" in r.stdout
    assert "What it does not prove" in r.stdout


def test_cli_json_output_has_the_spec_shape() -> None:
    r = _evidence("verify", str(GOLDEN / "single.json"), "--sha256", DIGEST.hex(), "--key", TRUSTED[0].vkey, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"valid", "step", "reason", "checks", "statement", "depositor"}
    assert out["valid"] is True and out["step"] is None
    assert out["depositor"] is None  # a v1 receipt names no depositor


def test_cli_wrong_file_exit_1_names_step_and_reason(tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"not the contract")
    r = _evidence("verify", str(GOLDEN / "single.json"), str(other), "--key", TRUSTED[0].vkey)
    assert r.returncode == 1
    assert "INVALID at step 1" in r.stdout and hashlib.sha256(b"not the contract").hexdigest() in r.stdout


def test_cli_tampered_receipt_exit_1(tmp_path: Path) -> None:
    doc = golden()
    _flip_proof("batch.proof", 0)(doc)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    r = _evidence("verify", str(path), "--key", TRUSTED[0].vkey, "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["step"] == 3


def test_cli_keys_from_environment(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "EVIDENCE_TRUSTED_KEYS": TRUSTED[0].vkey}
    r = _evidence("verify", str(GOLDEN / "single.json"), env=env)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["verify", str(GOLDEN / "single.json")], "no trusted key"),
        (["verify", "/nonexistent/receipt.json", "--key", "x+1+2"], "bad verifier key"),
        (["verify", "/nonexistent/receipt.json", "--key", str(GOLDEN / "trusted.vkey")], "cannot read the receipt"),
        (
            ["verify", str(GOLDEN / "single.json"), "/nonexistent/file", "--key", str(GOLDEN / "trusted.vkey")],
            "cannot read the file",
        ),
        (["verify", str(GOLDEN / "single.json"), "--sha256", "XYZ", "--key", str(GOLDEN / "trusted.vkey")], "--sha256"),
        (["verify", str(GOLDEN / "contract.txt"), "--key", str(GOLDEN / "trusted.vkey")], "not a readable receipt"),
        (["verify"], "Missing argument"),
    ],
)
def test_cli_usage_and_unreadable_input_exit_2(args: list[str], words: str) -> None:
    r = _evidence(*args, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stderr
    assert "Traceback" not in r.stderr


def test_verifier_imports_no_web_database_or_queue_module() -> None:
    code = (
        "import sys, service.core.verify, service.commands.verify; "
        "bad = [m for m in ('flask', 'sqlalchemy', 'celery', 'psycopg2', 'requests', 'werkzeug') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_receipt_built_by_us_verifies() -> None:
    """build_receipt + our own trees round-trip through the verifier (the service path, without a database)."""
    from service.core import merkle
    from service.core.formats import Checkpoint, Leaf, LedgerEntry, parse_time
    from service.core.note import sign_note
    from service.core.receipt import build_receipt, dump_json

    signer = Signer.generate("test.example/log")
    leaves = [
        Leaf(f"id{i:020d}", hashlib.sha256(b"%d" % i).digest(), parse_time("2026-11-28T16:13:35.000001Z"))
        for i in range(11)
    ]
    tree = merkle.BatchTree([merkle.leaf_hash(x.to_bytes()) for x in leaves])
    entry = LedgerEntry(0, tree.size, tree.root, parse_time("2026-11-28T16:13:36.000000Z")).to_bytes()
    log_root = merkle.root_from_leaf_hashes([merkle.leaf_hash(entry)])
    note = sign_note(Checkpoint(signer.name, 1, log_root).to_bytes(), [signer])
    doc = build_receipt(
        leaf=leaves[9],
        batch_seq=0,
        batch_size=tree.size,
        leaf_index=9,
        batch_root=tree.root,
        batch_proof=tree.inclusion_proof(9),
        entry=entry,
        ledger_proof=[],
        checkpoint=note,
        keys=[signer.verifier.vkey],
    )
    parsed = load_json(dump_json(doc))
    result = verify_receipt(parsed, sha256=leaves[9].sha256, trusted_keys=[Verifier.from_vkey(signer.verifier.vkey)])
    assert result.valid, result.to_json()
