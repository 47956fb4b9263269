"""Streaming loader throughput: our WebStream vs. webdataset's own WebDataset + WebLoader pipeline doing the same
work, from local files and over loopback HTTP; and our indexed ShardStream on the same local shards.

Real images: Fashion-MNIST (Debian's dataset-fashion-mnist), resized to 64 x 64 and JPEG-encoded once, written by
``multiview.data.write_dataset`` as ``--shards`` shards (``image.jpg``, ``label.cls``; with a manifest) in a temp
folder, deleted at the end. Every pipeline does the same work per sample: read the tar stream, decode the JPEG
with our ``multiview.data.fields.decode_value("jpg", ...)`` (and the label), make 2 AMDIM views of 64 px
(``multiview.views.create("amdim", size=64, n_views=2, channels=1)``, the generator seeded per sample by
``multiview.data.batching.sample_generator(seed, epoch, key)``), keep ``__key__`` and the label, collate batches of
``--batch-size`` with ``multiview.data.batching.collate``, drop incomplete batches, shuffle with a buffer of
``--shuffle-buffer`` samples, with the same DataLoader worker count.

Pipelines (each timed over one full pass of the same N samples per epoch; the counts are checked equal):
- ``ours``: ``WebStream(folder)`` (local) / ``WebStream("http://127.0.0.1:PORT/train-{000000..00000K}.tar")``
  + ``make_loader``; its view generator's ``batch`` maps each batch in one call (the path a recipe runs).
- ``wds``: ``wds.WebDataset(urls, shardshuffle=..., nodesplitter=split_by_node, workersplitter=split_by_worker)
  .shuffle(B).map(decode).batched(batch, collation_fn=views + collate, partial=False)`` + ``wds.WebLoader(ds,
  batch_size=None, num_workers=W, collate_fn=identity)``: the views mapped per batch through the same
  ``gen.batch`` and the loader's collate an identity, as ours -- the same work, tuned alike. The headline ratio is
  against this side.
- ``wds_per_sample`` (``--per-sample``): the same, but the views in a per-sample ``.map`` before ``.batched`` (how a
  webdataset pipeline is usually written); reported, not the headline.
- ``indexed``: our ``ShardStream(folder)`` (random access through the manifest, global shuffle), local only.

HTTP: a ``python -m http.server`` subprocess bound to 127.0.0.1 (its own process, so its GIL is not ours), stopped
at the end. webdataset opens http URLs through a ``curl`` subprocess; ours through ``http.client``.

Timing: per configuration (workers x source), one untimed warm-up epoch per pipeline, then ``--repeats`` timed
epochs, the pipelines taking turns in a rotating order (a change in machine load hits all alike). A fresh
DataLoader iterator (and so fresh workers) per epoch on every side. Reported per pipeline: best and median
samples/s and the spread ((max - min) / median); the ratios ours / wds of the best epochs, of the medians, and
the median and range of the per-round ratios (each round's epochs ran next to each other); and samples per
CPU-second (this process plus its reaped workers and their curl children: steadier than wall time on a busy
machine).

    OMP_NUM_THREADS=1 python benchmarks/stream.py [--n 8192] [--shards 8] [--batch-size 64] [--workers 0 2]
        [--repeats 4] [--shuffle-buffer 1000] [--sources local http] [--per-sample]

The last line printed is JSON: ``ours_per_s``, ``wds_per_s``, ``ratio`` (best epochs, local source, the largest
worker count), ``ratio_median``, ``ratio_cpu`` (median samples per CPU-second), ``indexed_per_s``, ``stream_vs_indexed`` and every configuration's figures under ``configs``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

import multiview.views
from multiview.data import ShardStream, make_loader, write_dataset
from multiview.data.batching import collate, map_samples, sample_generator
from multiview.data.fields import decode_value
from multiview.data.webstream import WebStream

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SEED, EPOCH = 0, 0
KEEP = ("__key__", "label")


def load_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Fashion-MNIST train images ``uint8 [n, 28, 28]`` and labels ``int64 [n]`` (cycled past 60,000)."""
    with gzip.open(FASHION) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION.with_name("train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    idx = np.arange(n) % len(images)
    return images[idx], labels[idx]


def jpeg_64(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).resize((64, 64), Image.BILINEAR).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def prepare(folder: Path, n: int, shards: int) -> list[str]:
    """Write ``n`` JPEG samples as ``shards`` shards with a manifest; returns the shard file names."""
    images, labels = load_images(n)
    samples = (
        {"__key__": f"{i:06d}", "image.jpg": jpeg_64(img), "label.cls": int(y)}
        for i, (img, y) in enumerate(zip(images, labels))
    )
    write_dataset(folder, {"train": samples}, builder="benchmark-stream", maxcount=-(-n // shards))
    names = sorted(p.name for p in folder.glob("train-*.tar"))
    if len(names) != shards:
        raise RuntimeError(f"expected {shards} shards in {folder}, found {names}")
    return names


def make_views():
    """The view generator every pipeline uses: 2 AMDIM views of 64 px from the grey 64 px image."""
    return multiview.views.create("amdim", size=64, n_views=2, channels=1, seed=SEED)


# ---------------------------------------------------------------------------------------------- webdataset
class Decode:
    """webdataset ``.map`` stage: raw tar members -> ``{"__key__", "image", "label"}`` with our decoder."""

    def __call__(self, raw: dict) -> dict:
        return {
            "__key__": raw["__key__"],
            "image": decode_value("jpg", raw["image.jpg"]),
            "label": decode_value("cls", raw["label.cls"]),
        }


class ViewsPerSample:
    """webdataset ``.map`` stage: one sample -> its views (+ key and label), the generator seeded per sample."""

    def __init__(self, gen):
        self.gen = gen

    def __call__(self, sample: dict) -> dict:
        item = dict(self.gen(sample, sample_generator(SEED, EPOCH, sample["__key__"])))
        for key in KEEP:
            item[key] = sample[key]
        return item


class ViewsBatched:
    """webdataset ``.batched`` collation: a list of decoded samples -> the views of all (``gen.batch``, the same
    per-sample generators, through our ``map_samples``) collated by our ``collate``."""

    def __init__(self, gen):
        self.gen = gen

    def __call__(self, samples: list[dict]) -> dict:
        return collate(map_samples(self.gen, KEEP, SEED, EPOCH, samples))


def identity(batch):
    return batch


def wds_loader(urls: list[str], batch_size: int, workers: int, buffer: int, per_sample: bool) -> wds.WebLoader:
    gen = make_views()
    ds = wds.WebDataset(
        urls,
        shardshuffle=len(urls),
        seed=SEED,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
    )
    ds = ds.shuffle(buffer, seed=SEED).map(Decode())
    if per_sample:
        ds = ds.map(ViewsPerSample(gen)).batched(batch_size, collation_fn=collate, partial=False)
    else:
        ds = ds.batched(batch_size, collation_fn=ViewsBatched(gen), partial=False)
    # collate_fn: batches are collated in the pipeline, as ours are (make_loader passes an identity too); the
    # DataLoader's default for batch_size=None (default_convert) would walk every batch again.
    return wds.WebLoader(ds, batch_size=None, num_workers=workers, collate_fn=identity)


# --------------------------------------------------------------------------------------------------- ours
def ours_loader(source, batch_size: int, workers: int, buffer: int):
    stream = WebStream(
        source,
        "train",
        fields=["image", "label"],
        map_fn=make_views(),
        batch_size=batch_size,
        shuffle=True,
        seed=SEED,
        shuffle_buffer=buffer,
        tail="drop",
    )
    return make_loader(stream, num_workers=workers)


def indexed_loader(folder: Path, batch_size: int, workers: int):
    stream = ShardStream(
        folder, "train", fields=["image", "label"], map_fn=make_views(), batch_size=batch_size, seed=SEED, tail="drop"
    )
    return make_loader(stream, num_workers=workers)


# ----------------------------------------------------------------------------------------------- timing
def cpu_seconds() -> float:
    """CPU seconds of this process and of its reaped children (the loader's workers, which exit at the end of
    every epoch, and their curl subprocesses); the HTTP server runs until the end, so it is not counted."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def epoch(loader, sums: dict | None = None) -> tuple[int, float, float]:
    """One full pass -> (samples, wall seconds, CPU seconds); checks the batches hold 2 float views
    ``[B, 1, 64, 64]``. ``sums`` (warm-up only) collects ``{key: sum of view0}``, to check that every pipeline
    made the same views."""
    count, start, cpu = 0, time.perf_counter(), cpu_seconds()
    it = iter(loader)
    for batch in it:
        view = batch["view0"]
        assert view.dtype == torch.float32 and tuple(view.shape[1:]) == (1, 64, 64), (view.dtype, view.shape)
        assert batch["view1"].shape == view.shape and len(batch["__key__"]) == view.shape[0]
        count += view.shape[0]
        if sums is not None:
            sums.update(zip(batch["__key__"], view.flatten(1).sum(1).tolist()))
    del it  # the workers are joined when their iterator ends; their CPU time is counted once they are reaped
    return count, time.perf_counter() - start, cpu_seconds() - cpu


def check_same_views(sums: dict[str, dict]) -> int:
    """Every pipeline made the same views for the keys they share -> how many keys were compared."""
    (first, ref), *others = sums.items()
    for name, got in others:
        shared = ref.keys() & got.keys()
        if len(shared) < len(ref) // 2:
            raise RuntimeError(f"{name} and {first} share only {len(shared)} of {len(ref)} keys")
        bad = [k for k in shared if abs(ref[k] - got[k]) > 1e-2 * (1 + abs(ref[k]))]
        if bad:
            raise RuntimeError(f"{name} made other views than {first} for {len(bad)} keys, e.g. {bad[0]}")
    return len(ref)


def summary(rates: list[float], cpu_rates: list[float]) -> dict:
    med = statistics.median(rates)
    return {
        "best_per_s": round(max(rates), 1),
        "median_per_s": round(med, 1),
        "spread": round((max(rates) - min(rates)) / med, 3),
        "epochs_per_s": [round(r, 1) for r in rates],
        "per_cpu_s_median": round(statistics.median(cpu_rates), 1),
        "per_cpu_s_best": round(max(cpu_rates), 1),
    }


def ratios(ours: list[float], base: list[float]) -> dict:
    """ours / base: of the best epochs, of the medians, and per round (median, min, max)."""
    rounds = [o / b for o, b in zip(ours, base)]
    return {
        "best": round(max(ours) / max(base), 3),
        "median": round(statistics.median(ours) / statistics.median(base), 3),
        "rounds_median": round(statistics.median(rounds), 3),
        "rounds_min": round(min(rounds), 3),
        "rounds_max": round(max(rounds), 3),
    }


def run_config(loaders: dict, repeats: int) -> dict:
    """Warm-up epoch each, then ``repeats`` rounds with the pipelines in a rotating order."""
    counts, sums = {}, {name: {} for name in loaders}
    for name, loader in loaders.items():
        counts[name], _, _ = epoch(loader, sums[name])
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"the pipelines did not read the same number of samples: {counts}")
    check_same_views(sums)
    names = list(loaders)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            n, wall, cpu_s = epoch(loaders[name])
            if n != counts[name]:
                raise RuntimeError(f"{name}: {n} samples in a timed epoch, {counts[name]} in the warm-up")
            rates[name].append(n / wall)
            cpu[name].append(n / cpu_s)
    out: dict = {name: summary(rates[name], cpu[name]) for name in names}
    out["samples_per_epoch"] = counts["ours"]
    for other, label in (("wds", "ratio"), ("wds_per_sample", "ratio_per_sample"), ("indexed", "stream_vs_indexed")):
        if other in rates:
            out[label] = ratios(rates["ours"], rates[other])
            out[f"{label}_cpu"] = ratios(cpu["ours"], cpu[other])
    return out


class HTTPServer:
    """``python -m http.server`` on 127.0.0.1 (an ephemeral port) serving ``root``, in its own process."""

    def __init__(self, root: Path):
        cmd = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        try:
            self.port = int(line.split(" port ")[1].split()[0])
        except (IndexError, ValueError):
            self.stop()
            raise RuntimeError(f"http.server did not start: {line!r}") from None
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def describe(res: dict, names: list[str]) -> list[str]:
    """The printed lines of one configuration."""
    rates = " | ".join(
        f"{name} best {res[name]['best_per_s']:,.0f} med {res[name]['median_per_s']:,.0f} "
        f"(spread {res[name]['spread']:.0%}; {res[name]['per_cpu_s_median']:,.0f}/CPU-s)"
        for name in names
    )
    lines = [f"  samples/s: {rates}"]
    for label, text in (("ratio", "ours / wds"), ("ratio_per_sample", "ours / wds per-sample map"),
                        ("stream_vs_indexed", "ours streaming / ours indexed")):  # fmt: skip
        if label in res:
            r, c = res[label], res[f"{label}_cpu"]
            lines.append(
                f"  {text}: best {r['best']:.3f}, median {r['median']:.3f}, per round {r['rounds_median']:.3f} "
                f"[{r['rounds_min']:.3f}, {r['rounds_max']:.3f}]; per CPU-s (median) {c['median']:.3f}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="images (default 8192)")
    parser.add_argument("--shards", type=int, default=8, help="shards the images are written to (default 8)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=4, help="timed epochs per pipeline and configuration")
    parser.add_argument("--shuffle-buffer", type=int, default=1000, help="samples (both sides)")
    parser.add_argument("--sources", nargs="+", default=["local", "http"], choices=["local", "http"])
    parser.add_argument("--per-sample", action="store_true", help="also time wds with a per-sample views .map")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: OMP_NUM_THREADS is not 1; set it so DataLoader workers also use one thread", file=sys.stderr)

    load_before = loadavg()
    root = Path(tempfile.mkdtemp(prefix="mv-bench-stream-"))
    server = None
    configs: dict[str, dict] = {}
    try:
        folder = root / "shards"
        start = time.perf_counter()
        names = prepare(folder, args.n, args.shards)
        print(f"{args.n} Fashion-MNIST images at 64x64 JPEG in {len(names)} shards ({time.perf_counter() - start:.1f} s);"
              f" batch {args.batch_size}, shuffle buffer {args.shuffle_buffer}, 2 AMDIM views of 64 px, "
              f"load {load_before}")  # fmt: skip
        if "http" in args.sources:
            server = HTTPServer(folder)
        for source in args.sources:
            if source == "local":
                urls, ours_source = [str(folder / name) for name in names], folder
            else:
                last = int(names[-1].split("-")[1].split(".")[0])
                urls = [f"{server.url}/{name}" for name in names]
                ours_source = f"{server.url}/train-{{000000..{last:06d}}}.tar"
            for workers in args.workers:
                sb = args.shuffle_buffer
                loaders = {
                    "ours": ours_loader(ours_source, args.batch_size, workers, sb),
                    "wds": wds_loader(urls, args.batch_size, workers, sb, per_sample=False),
                }
                if args.per_sample:
                    loaders["wds_per_sample"] = wds_loader(urls, args.batch_size, workers, sb, per_sample=True)
                if source == "local":
                    loaders["indexed"] = indexed_loader(folder, args.batch_size, workers)
                key = f"{source}/workers={workers}"
                start = time.perf_counter()
                res = configs[key] = run_config(loaders, args.repeats)
                print(f"{key}: {res['samples_per_epoch']} samples per epoch, {args.repeats} rounds, "
                      f"{time.perf_counter() - start:.0f} s, load {loadavg()}")  # fmt: skip
                print("\n".join(describe(res, list(loaders))))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    head_source = "local" if "local" in args.sources else args.sources[0]
    head = configs[f"{head_source}/workers={max(args.workers)}"]
    out = {
        "ours_per_s": head["ours"]["best_per_s"],
        "wds_per_s": head["wds"]["best_per_s"],
        "ratio": head["ratio"]["best"],
        "ratio_median": head["ratio"]["median"],
        "ratio_cpu": head["ratio_cpu"]["median"],
        "source": head_source,
        "workers": max(args.workers),
        "n": args.n,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": loadavg(),
    }
    if "indexed" in head:
        out.update(indexed_per_s=head["indexed"]["best_per_s"], stream_vs_indexed=head["stream_vs_indexed"]["best"])
    print(json.dumps({**out, "configs": configs}))


if __name__ == "__main__":
    main()
