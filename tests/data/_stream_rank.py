"""Run by tests/data/test_webstream_distributed.py under ``torchrun --standalone --nproc_per_node 2``: stream a
source with 2 loader workers per rank, all-reduce once per batch (as training does, so unequal batch counts would
hang), and write the keys this rank saw to ``OUT/keys_rank<r>.json``."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from multiview.data import make_loader
from multiview.data.remote import IOOptions
from multiview.data.webstream import WebStream


def main(source: str, out: str, mode: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    extra = {"resampled": True, "epoch_size": 64} if mode == "resampled" else {"tail": "drop"}
    stream = WebStream(source, "train", fields=["image", "label"], batch_size=4, seed=11,
                       options=IOOptions(timeout=10, retries=2, backoff=0.05), **extra)  # fmt: skip
    keys, pads = [], 0
    for batch in make_loader(stream, num_workers=2):
        keys.append(list(batch["__key__"]))
        pads += int(batch["__pad__"].sum())
        dist.all_reduce(torch.ones(1))  # a rank with fewer batches would leave the other waiting here
    dist.barrier()
    Path(out, f"keys_rank{rank}.json").write_text(json.dumps({"keys": keys, "pads": pads, "len": len(stream)}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
