"""Start-up time and memory of a reader as the data set grows: the indexed reader against the streaming one.

For each size N, shards of 1,000 tiny samples (a 16-float ``.npy`` and a ``.cls`` each) are written once, with a
manifest, so both readers read the same files. Each measurement runs in a fresh process (``--child``): build the
stream with a global shuffle, take the first batch, report the seconds to it and the process's peak resident
memory above what it held after importing (``ru_maxrss``), and the Python heap allocated (``tracemalloc``).

    python benchmarks/stream_startup.py [--sizes 10000 100000 300000] [--batch-size 64]

The indexed reader indexes every shard a global shuffle touches (all of them) before its first batch: its
start-up and memory grow with N. The streaming reader holds a shard list and one shuffle group per worker:
they must not. The last line printed is JSON with every figure and, per reader, the growth from the smallest to
the largest N (``ratio_*``: figure at the largest N / figure at the smallest).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

PER_SHARD = 1000


def write_shards(root: Path, n: int) -> None:
    """``n`` samples in shards of PER_SHARD, plus the manifest both readers understand."""
    root.mkdir(parents=True)
    vector = io.BytesIO()
    np.save(vector, np.arange(16, dtype=np.float32))
    blobs = {"x.npy": vector.getvalue()}
    shards = []
    for s in range(-(-n // PER_SHARD)):
        name = f"train-{s:06d}.tar"
        count = min(PER_SHARD, n - s * PER_SHARD)
        with tarfile.open(root / name, "w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(count):
                key = f"k{s * PER_SHARD + i:09d}"
                for field, data in (*blobs.items(), ("label.cls", str(i % 10).encode())):
                    info = tarfile.TarInfo(f"{key}.{field}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        shards.append({"name": name, "count": count, "bytes": (root / name).stat().st_size})
    manifest = {
        "format": "multiview-shards",
        "version": 1,
        "builder": "benchmark",
        "builder_args": {},
        "fields": {"x.npy": {"modality": "vector", "shape": [16], "dtype": "float32"},
                   "label.cls": {"modality": "label", "shape": [], "dtype": "int64"}},
        "splits": {"train": {"count": n, "fields": ["label.cls", "x.npy"], "shards": shards}},
        "keys_sanitised": 0,
        "extra": {},
    }  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))


def child(root: str, reader: str, batch: int) -> dict:
    """Runs in a fresh process: seconds and memory to the first batch of ``reader`` over ``root``."""
    import tracemalloc

    from multiview.data import ShardStream, make_loader
    from multiview.data.webstream import WebStream

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    if reader == "indexed":
        stream = ShardStream(root, "train", batch_size=batch, shuffle=True, seed=0)
    else:
        stream = WebStream(root, "train", batch_size=batch, shuffle=True, seed=0, shuffle_buffer=1000)
    first = next(iter(make_loader(stream)))
    seconds = time.perf_counter() - start
    _, heap_peak = tracemalloc.get_traced_memory()
    assert len(first["__key__"]) == batch
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss  # KiB on Linux
    return {"seconds": seconds, "heap_peak_mb": heap_peak / 2**20, "rss_growth_mb": rss / 1024}


def measure(root: Path, reader: str, batch: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", str(root), reader, str(batch)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return
    results: dict = {"sizes": args.sizes, "indexed": {}, "stream": {}}
    with tempfile.TemporaryDirectory(prefix="stream-startup-") as tmp:
        for n in args.sizes:
            root = Path(tmp) / f"n{n}"
            print(f"writing {n:,} samples ...", file=sys.stderr, flush=True)
            write_shards(root, n)
            for reader in ("indexed", "stream"):
                r = measure(root, reader, args.batch_size)
                results[reader][n] = r
                print(f"N={n:>9,} {reader:<8} first batch {r['seconds']:7.2f} s   heap peak {r['heap_peak_mb']:8.1f} MB"
                      f"   RSS growth {r['rss_growth_mb']:8.1f} MB", flush=True)  # fmt: skip
    lo, hi = min(args.sizes), max(args.sizes)
    for reader in ("indexed", "stream"):
        for key in ("seconds", "heap_peak_mb"):
            results[f"ratio_{reader}_{key}"] = results[reader][hi][key] / max(results[reader][lo][key], 1e-9)
    print(f"N {lo:,} -> {hi:,}: indexed first batch x{results['ratio_indexed_seconds']:.1f}, heap "
          f"x{results['ratio_indexed_heap_peak_mb']:.1f}; streamed x{results['ratio_stream_seconds']:.1f}, heap "
          f"x{results['ratio_stream_heap_peak_mb']:.1f}")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
