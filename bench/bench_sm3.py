"""SM3 beside SHA-256 on upload bytes (issue 16): SHA-256 alone against SHA-256 + SM3 in one pass.

Criterion (issue 16): hashing an upload with SHA-256 and SM3 must not cut throughput below 0.5 of SHA-256 alone
on the same bytes; the SM3 library is picked by this measurement. Every figure comes from this run, on the same
bytes (``--mib`` MiB of random data held in memory, fed in the 1 MiB chunks the upload path reads), each the best
of ``--repeat`` interleaved runs so that a busy machine hurts all alike:

- baseline: ``hashlib.sha256`` alone, chunk by chunk;
- SM3 alone, for each candidate: ``hashlib.new("sm3")`` (the OpenSSL that Python links) and ``cryptography``'s
  ``hashes.SM3`` (the OpenSSL built into its wheel);
- one pass, serial: each chunk to SHA-256 then to SM3, for each candidate;
- one pass, overlapped: SM3 of chunk i in a helper thread while the caller hashes it with SHA-256 (both release
  the GIL on large buffers, so two cores work at once);
- the product: ``service.core.hashing.digest_stream(..., sm3=True)`` reading an in-memory stream.

With ``--http MIB``, also the upload path end to end: two ``evidence serve`` (gunicorn) servers on the same machine,
one with ``EVIDENCE_UPLOAD_SM3=0`` (SHA-256 alone) and one with the default (SHA-256 + SM3 in one pass), each sent
the same MIB-MiB file by ``curl -T`` (``POST /v1/evidence``, raw body), rounds interleaved, best of ``--repeat``.

Ratio = throughput / baseline. Pure-Python SM3 packages (``gmssl``, ``snowland-smx``) are not measured: they run
at a few MB/s, hundreds of times below the C implementations.

    .venv/bin/python bench/bench_sm3.py [--mib 256] [--repeat 3] [--http 512]

Owns: nothing the service imports. Must not be imported by service code.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes  # noqa: E402

from service.core.hashing import CHUNK_SIZE, digest_stream  # noqa: E402

SM3_CANDIDATES: dict[str, Callable[[], Any]] = {
    "hashlib sm3": lambda: hashlib.new("sm3"),
    "cryptography SM3": lambda: hashes.Hash(hashes.SM3()),
}


def _chunks(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


def sha256_alone(chunks: list[memoryview]) -> None:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    h.digest()


def sm3_alone(make: Callable[[], Any]) -> Callable[[list[memoryview]], None]:
    def run(chunks: list[memoryview]) -> None:
        s = make()
        for c in chunks:
            s.update(c)
        s.finalize() if hasattr(s, "finalize") else s.digest()

    return run


def serial(make: Callable[[], Any]) -> Callable[[list[memoryview]], None]:
    def run(chunks: list[memoryview]) -> None:
        h, s = hashlib.sha256(), make()
        for c in chunks:
            h.update(c)
            s.update(c)
        h.digest()
        s.finalize() if hasattr(s, "finalize") else s.digest()

    return run


def overlapped(make: Callable[[], Any]) -> Callable[[list[memoryview]], None]:
    def run(chunks: list[memoryview]) -> None:
        h, s = hashlib.sha256(), make()
        with ThreadPoolExecutor(1) as pool:
            pending = None
            for c in chunks:
                if pending is not None:
                    pending.result()
                pending = pool.submit(s.update, c)
                h.update(c)
            if pending is not None:
                pending.result()
        h.digest()
        s.finalize() if hasattr(s, "finalize") else s.digest()

    return run


def product(data: bytes) -> Callable[[list[memoryview]], None]:
    def run(_chunks: list[memoryview]) -> None:
        digest_stream(io.BytesIO(data), sm3=True)

    return run


def http_uploads(mib: int, repeat: int) -> None:
    """SHA-256 alone vs SHA-256 + SM3 through the real upload path (see the module docstring)."""
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_service import clean_env, evidence_cli, free_port, generate_file, hash_local, process, upload

    tmp = Path(tempfile.mkdtemp(prefix="bench-sm3-"))
    try:
        file = tmp / "upload.bin"
        generate_file(file, mib << 20)
        hash_local(file)  # page cache warm
        servers = {}
        for name, flag in (("SHA-256 alone (EVIDENCE_UPLOAD_SM3=0)", "0"), ("SHA-256 + SM3 (default)", "1")):
            data = tmp / f"data-{flag}"
            env = clean_env(EVIDENCE_RATE_LIMIT="0", EVIDENCE_UPLOAD_SM3=flag)
            key = evidence_cli("tenant", "create", "bench", "--data-dir", str(data), env=env).splitlines()[-1].strip()
            servers[name] = (env, data, key, free_port())
        best = {name: float("inf") for name in servers}
        from contextlib import ExitStack

        with ExitStack() as stack:
            pids = {}
            for name, (env, data, _key, port) in servers.items():
                args = [sys.executable, "-m", "service", "serve", "--port", str(port), "--data-dir", str(data)]
                proc = stack.enter_context(
                    process(args, env=env, log=tmp / f"{port}.log", ready_url=f"http://127.0.0.1:{port}/readyz")
                )
                pids[name] = proc.pid
            for _ in range(repeat):
                for name, (_env, _data, key, port) in servers.items():
                    best[name] = min(best[name], upload(port, key, file, pids[name]).seconds)
        base = (mib << 20) / 1e6 / best["SHA-256 alone (EVIDENCE_UPLOAD_SM3=0)"]
        print(f"\nHTTP upload, {mib} MiB raw body by curl -T, best of {repeat}, load average {os.getloadavg()}")
        for name, seconds in best.items():
            rate = (mib << 20) / 1e6 / seconds
            print(f"{name:<58} {rate:8.0f} {rate / base:7.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="bytes hashed per run, in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the best counts")
    parser.add_argument("--http", type=int, default=0, metavar="MIB", help="also upload MIB MiB over HTTP (see above)")
    args = parser.parse_args()

    data = os.urandom(args.mib << 20)
    chunks = _chunks(data)
    # Same answers first: every candidate agrees with the others on these bytes.
    answers = {name: make() for name, make in SM3_CANDIDATES.items()}
    for s in answers.values():
        s.update(data)
    values = {name: (s.finalize() if hasattr(s, "finalize") else s.digest()) for name, s in answers.items()}
    if len(set(values.values())) != 1:
        raise SystemExit(f"SM3 candidates disagree: {values}")
    got = digest_stream(io.BytesIO(data), sm3=True)
    if got.sm3 != next(iter(values.values())) or got.sha256 != hashlib.sha256(data).digest():
        raise SystemExit("digest_stream disagrees with hashlib/cryptography")

    runs: dict[str, Callable[[list[memoryview]], None]] = {"SHA-256 alone (baseline)": sha256_alone}
    for name, make in SM3_CANDIDATES.items():
        runs[f"{name} alone"] = sm3_alone(make)
    for name, make in SM3_CANDIDATES.items():
        runs[f"SHA-256 + {name}, one pass, serial"] = serial(make)
    for name, make in SM3_CANDIDATES.items():
        runs[f"SHA-256 + {name}, one pass, overlapped"] = overlapped(make)
    runs["product: hashing.digest_stream(sm3=True)"] = product(data)

    best = {name: float("inf") for name in runs}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn(chunks)
            best[name] = min(best[name], time.perf_counter() - t0)

    mb = len(data) / 1e6
    base = mb / best["SHA-256 alone (baseline)"]
    print(f"{args.mib} MiB, chunks of {CHUNK_SIZE >> 10} KiB, best of {args.repeat}, load average {os.getloadavg()}")
    print(f"{'what':<58} {'MB/s':>8} {'ratio':>7}")
    for name in runs:
        rate = mb / best[name]
        print(f"{name:<58} {rate:8.0f} {rate / base:7.2f}")
    verdict = "met" if mb / best["product: hashing.digest_stream(sm3=True)"] / base >= 0.5 else "NOT met"
    print(f"criterion (product >= 0.5 x SHA-256 alone): {verdict}")
    if args.http:
        http_uploads(args.http, args.repeat)


if __name__ == "__main__":
    main()
