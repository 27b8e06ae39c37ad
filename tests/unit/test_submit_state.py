"""The ``evidence submit`` state: a snapshot plus a journal, replayed on load (torn tail ignored, replay idempotent)."""

from __future__ import annotations

import os
from pathlib import Path

from service.commands.client import JOURNAL_NAME, STATE_NAME, FileEntry, State


def entry(i: int) -> FileEntry:
    return FileEntry(f"/data/f{i}", f"f{i}", f"{i:064x}", 10 + i, 1_000 + i, None, -1)


def test_journal_records_are_replayed_over_the_snapshot_and_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    state = State(tmp_path / STATE_NAME, "run1", "http://127.0.0.1:1", None)
    state.save()
    state.add_chunk([entry(0), entry(1)])
    state.files["/data/f0"].id = "id0"
    state.append({"t": "ids", "n": 0, "items": [["/data/f0", "id0", None], ["/data/f1", "id1", None]]}, sync=False)
    state.append({"t": "receipts", "items": [["/data/f0", "/out/f0.receipt.json", 1234]]}, sync=True)
    state.add_chunk([entry(2)])
    with open(tmp_path / JOURNAL_NAME, "ab") as f:
        f.write(b'{"t":"ids","n":1,"items":[["/data/f2","id2",nu')  # killed in the middle of a write

    loaded = State.load(tmp_path / STATE_NAME)
    assert loaded.chunks == [["/data/f0", "/data/f1"], ["/data/f2"]]
    assert [loaded.files[f"/data/f{i}"].id for i in range(3)] == ["id0", "id1", None]
    assert loaded.files["/data/f0"].receipt == "/out/f0.receipt.json"
    assert loaded.files["/data/f0"].receipt_size == 1234
    assert loaded.files["/data/f2"].chunk == 1

    # A crash after the new snapshot but before the journal is dropped: replaying it again changes nothing.
    journal = (tmp_path / JOURNAL_NAME).read_bytes()
    loaded.save()
    assert not (tmp_path / JOURNAL_NAME).exists()
    (tmp_path / JOURNAL_NAME).write_bytes(journal)
    again = State.load(tmp_path / STATE_NAME)
    assert again.chunks == loaded.chunks
    assert {p: vars(e) for p, e in again.files.items()} == {p: vars(e) for p, e in loaded.files.items()}


def test_walk_order_skips_and_symlinks(tmp_path: Path) -> None:
    """``walk``: a folder's files sorted by name before its subfolders (sorted), receipts, certificates, the state
    and their temp files skipped, a symlink to a file taken, a symlinked folder and a broken link not followed."""
    from service.commands.client import walk

    root = tmp_path / "in"
    for rel in ("b.bin", "a.bin", "z/2.bin", "z/1.bin", "m/x/deep.bin", "m/top.bin"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    for skipped in (
        "a.bin.receipt.json",
        "a.bin.certificate.pdf",
        ".evidence-submit.json",
        ".evidence-submit.json.log",
        ".a.bin.receipt.json.123.tmp",
    ):
        (root / skipped).write_bytes(b"")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.bin").write_bytes(b"o")
    (root / "c-link.bin").symlink_to(root / "a.bin")
    (root / "d-broken").symlink_to(tmp_path / "missing")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    found = list(walk([root, root / "b.bin"]))
    assert [rel for _, rel in found] == [
        "a.bin",
        "b.bin",
        "c-link.bin",
        "m/top.bin",
        "m/x/deep.bin",
        "z/1.bin",
        "z/2.bin",
        "b.bin",
    ]
    assert [p for p, _ in found][:2] == [str(root / "a.bin"), str(root / "b.bin")]
    assert all(isinstance(p, str) and os.path.isabs(p) for p, _ in found)
