"""Friendlier edges of the command line (issue 12 item 8), each as behaviour a user meets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli

GOLDEN = Path(__file__).resolve().parents[1] / "vectors" / "receipts"
VKEYS = str(GOLDEN / "trusted.vkey")


def test_verify_finds_the_file_beside_the_receipt(tmp_path: Path) -> None:
    shutil.copy(GOLDEN / "contract.txt", tmp_path / "contract.txt")
    receipt = tmp_path / "contract.txt.receipt.json"
    shutil.copy(GOLDEN / "single.json", receipt)
    result = CliRunner().invoke(cli, ["verify", str(receipt), "--key", VKEYS, "--json"])
    assert result.exit_code == 0, result.output
    assert f"Using the file beside the receipt: {tmp_path / 'contract.txt'}" in result.stderr
    checks = {c["step"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks[1]["ok"] and "the file's SHA-256 is" in checks[1]["detail"]  # the file was really compared


def test_a_wrong_file_is_named_as_such_not_by_the_steps_title(tmp_path: Path) -> None:
    (tmp_path / "contract.txt").write_bytes(b"a different contract")
    receipt = tmp_path / "contract.txt.receipt.json"
    shutil.copy(GOLDEN / "single.json", receipt)
    result = CliRunner().invoke(cli, ["verify", str(receipt), "--key", VKEYS])
    assert result.exit_code == 1
    assert "INVALID: this is not the file the receipt was issued for" in result.stdout
    assert "INVALID at step 1" in result.stdout


def test_an_untrusted_key_is_named_plainly() -> None:
    from service.core.note import Signer

    origin = json.loads((GOLDEN / "single.json").read_text())["ledger"]["checkpoint"].split("\n")[0]
    other = Signer.generate(origin).verifier.vkey  # the right name, another key
    result = CliRunner().invoke(cli, ["verify", str(GOLDEN / "single.json"), "--key", other])
    assert result.exit_code == 1, result.output
    assert "INVALID: the ledger state is not signed by a key you trust" in result.stdout


@pytest.mark.parametrize(
    ("saved", "words"),
    [
        (
            {"id": "01JDXYZ", "sha256": "ab" * 32, "received_at": "2026-11-30T00:00:00.000000Z", "status": "pending"},
            ["status answer (pending), not a receipt", "Fetch it again"],
        ),
        (
            {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "the API key is not valid"},
            ["error answer of the server (401: the API key is not valid), not a receipt", "fetch it again"],
        ),
    ],
    ids=["pending-202-body", "401-problem"],
)
def test_a_saved_server_answer_is_not_taken_for_a_receipt(tmp_path: Path, saved: object, words: list[str]) -> None:
    path = tmp_path / "contract.pdf.receipt.json"
    path.write_text(json.dumps(saved))
    result = CliRunner().invoke(cli, ["verify", str(path), "--sha256", "ab" * 32, "--key", VKEYS])
    assert result.exit_code == 2
    for word in words:
        assert word in result.output, result.output


def test_upper_case_digest_is_accepted_by_verify(tmp_path: Path) -> None:
    import hashlib

    digest = hashlib.sha256((GOLDEN / "contract.txt").read_bytes()).hexdigest().upper()
    result = CliRunner().invoke(cli, ["verify", str(GOLDEN / "single.json"), "--sha256", digest, "--key", VKEYS])
    assert result.exit_code == 0, result.output


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("group", [(), ("tenant",), ("tenant", "key"), ("keys",), ("db",), ("receipts",)])
def test_help_lists_commands_without_truncated_descriptions(group: tuple[str, ...]) -> None:
    text = _help(*group)
    commands = text.split("Commands:", 1)[1]
    assert "..." not in commands, commands


@pytest.mark.parametrize(
    "command",
    [
        ("serve",),
        ("audit",),
        ("tenant", "create"),
        ("tenant", "list"),
        ("tenant", "revoke"),
        ("tenant", "key", "add"),
        ("tenant", "key", "revoke"),
        ("db", "upgrade"),
        ("db", "check"),
        ("keys", "init"),
        ("keys", "show"),
        ("keys", "publish"),
        ("keys", "rotate"),
        ("keys", "list"),
    ],
    ids=" ".join,
)
def test_every_command_that_opens_the_data_dir_takes_data_dir(command: tuple[str, ...]) -> None:
    assert "--data-dir" in _help(*command)


@pytest.mark.parametrize(
    "command", [("certificate",), ("bundle",), ("submit",), ("receipts", "fetch"), ("keys", "fetch")], ids=" ".join
)
def test_the_output_flag_is_o_output_everywhere(command: tuple[str, ...]) -> None:
    assert "-o, --output" in _help(*command)
