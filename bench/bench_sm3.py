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

Ratio = throughput / baseline. Pure-Python SM3 packages (``gmssl``, ``snowland-smx``) are not measured: they run
at a few MB/s, hundreds of times below the C implementations.

    .venv/bin/python bench/bench_sm3.py [--mib 256] [--repeat 3]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="bytes hashed per run, in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the best counts")
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


if __name__ == "__main__":
    main()
