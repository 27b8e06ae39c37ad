"""Benchmark of service.core.merkle.BatchTree against the bare cost of hashlib and against pymerkle 7.

Usage: python bench/bench_merkle.py [--sizes 10000,100000,1000000] [--quick] [--repeat 3]

For each size n (leaves of 32 random bytes, so that every hash input is 33 or 65 bytes):
- floor: 2n-1 bare ``hashlib.sha256(x).digest()`` calls (n on 33 bytes, n-1 on 65 bytes), timed in this run;
- build: ``BatchTree.from_leaves`` (leaf hashes and all levels), ratio to the floor (issue 15 target <= 1.25x at 10^6);
- proof: median time of one ``inclusion_proof`` over 1000 random indexes (target <= 20 us);
- pymerkle: ``InmemoryTree.init_from_entries`` and ``prove_inclusion`` (targets: >= 10x build, >= 30x proof);
  skipped at 10^6 with --quick (it takes about half a minute there);
- memory: bytes retained by our tree (tracemalloc) and the process's peak RSS.
Floor and build are each the best of --repeat runs, interleaved, so that a busy machine hurts both alike, and
timed in CPU seconds of this process (``time.process_time``: page faults included, time spent waiting for a
core on a loaded machine excluded); the floor loop is timed the same way.
Owns: nothing the service imports. Must not be imported by service code.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.core.merkle import BatchTree  # noqa: E402


def floor_time(n: int) -> float:
    sha256 = hashlib.sha256
    x33, x65 = b"\x00" * 33, b"\x01" * 65
    t0 = time.process_time()
    for _ in range(n):
        sha256(x33).digest()
    for _ in range(n - 1):
        sha256(x65).digest()
    return time.process_time() - t0


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    t0 = time.process_time()
    result = fn()
    return time.process_time() - t0, result


def median_us(fn: Callable[[int], object], indexes: list[int]) -> float:
    times = []
    clock = time.perf_counter_ns
    for i in indexes:
        t0 = clock()
        fn(i)
        times.append(clock() - t0)
    return statistics.median(times) / 1000


def retained_bytes(leaves: list[bytes]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tree = BatchTree.from_leaves(leaves)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del tree
    return after - before


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def run(n: int, quick: bool, repeat: int, proofs: int) -> None:
    rnd = random.Random(n)
    leaves = [os.urandom(32) for _ in range(n)]
    floors, builds = [], []
    tree: BatchTree | None = None
    for _ in range(repeat):
        floors.append(timed(lambda: floor_time(n))[0])
        t, built = timed(lambda: BatchTree.from_leaves(leaves))
        builds.append(t)
        assert isinstance(built, BatchTree)
        tree = built
    assert tree is not None
    floor, build = min(floors), min(builds)
    indexes = [rnd.randrange(n) for _ in range(proofs)]
    proof_us = median_us(tree.inclusion_proof, indexes)
    mem = retained_bytes(leaves)

    print(f"\n== n = {n:,} leaves ==")
    print(f"floor (2n-1 bare sha256)   {floor:9.3f} s CPU")
    ratio = build / floor
    target = "target <= 1.25x at 10^6" if n >= 1_000_000 else "(target applies at 10^6)"
    print(
        f"BatchTree build            {build:9.3f} s CPU   {ratio:5.2f}x floor   {target}"
        + (f"  {verdict(ratio <= 1.25)}" if n >= 1_000_000 else "")
    )
    print(
        f"one inclusion proof        {proof_us:9.2f} us median of {proofs}   target <= 20 us  {verdict(proof_us <= 20)}"
    )
    print(f"tree memory (tracemalloc)  {mem / 2**20:9.1f} MiB   ({mem / n:.1f} bytes per leaf)")

    if quick and n >= 1_000_000:
        print("pymerkle                   skipped (--quick)")
    else:
        try:
            import pymerkle
        except ImportError:
            print("pymerkle                   not installed")
        else:
            t_pym, pym = timed(lambda: pymerkle.InmemoryTree.init_from_entries(leaves))
            assert pym.get_root() == tree.root  # type: ignore[attr-defined]
            pym_us = median_us(lambda i: pym.prove_inclusion(i + 1), indexes[: max(100, proofs // 10)])  # type: ignore[attr-defined]
            print(
                f"pymerkle build             {t_pym:9.3f} s   we are {t_pym / build:6.1f}x faster   "
                f"target >= 10x  {verdict(t_pym / build >= 10)}"
            )
            print(
                f"pymerkle one proof         {pym_us:9.2f} us   we are {pym_us / proof_us:6.1f}x faster   "
                f"target >= 30x  {verdict(pym_us / proof_us >= 30)}"
            )
            del pym
    print(f"peak RSS so far            {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:9.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--quick", action="store_true", help="skip pymerkle at 10^6 leaves")
    parser.add_argument("--repeat", type=int, default=3, help="runs of floor and build (best is kept)")
    parser.add_argument("--proofs", type=int, default=1000, help="random indexes for the proof median")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {hashlib.sha256().name} from hashlib, cpus {os.cpu_count()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.quick, args.repeat, args.proofs)


if __name__ == "__main__":
    main()
