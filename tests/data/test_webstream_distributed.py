"""2 processes (torchrun, gloo) x 2 loader workers stream 7 uneven shards over HTTP: equal batch counts, no sample
read twice in each-shard-once mode, no hang (every run has a timeout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import foreign, make_uneven

SCRIPT = Path(__file__).with_name("_stream_rank.py")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def torchrun(source: str, out: Path, mode: str) -> list[dict]:
    out.mkdir(parents=True)
    runner = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "no_proxy": "127.0.0.1,localhost"}
    cmd = [runner, "--standalone", "--nproc_per_node=2", str(SCRIPT), source, str(out), mode]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"keys_rank{r}.json").read_text()) for r in range(2)]


def test_each_shard_once_over_http_equal_batches_no_sample_twice(tmp_path, http_server):
    root = make_uneven(tmp_path)  # 41 samples in shards of 3, 9, 4, 12, 1, 7, 5; the manifest gives the counts
    for path in root.iterdir():
        http_server.put(path.name, path)
    ranks = torchrun(http_server.url + "/", tmp_path / "out", "once")
    assert len(ranks[0]["keys"]) == len(ranks[1]["keys"]) == ranks[0]["len"] == ranks[1]["len"] > 0
    flat = [k for r in ranks for batch in r["keys"] for k in batch]
    assert len(flat) == len(set(flat)) == ranks[0]["len"] * 2 * 4  # nothing twice; the cut is what is missing
    assert 41 - len(flat) < 2 * 2 * 4  # a cut drops less than one batch per worker
    assert ranks[0]["pads"] == ranks[1]["pads"] == 0


def test_resampled_foreign_shards_over_http_fixed_epoch(tmp_path, http_server):
    root = foreign(make_uneven(tmp_path))
    for path in root.iterdir():
        http_server.put(path.name, path)
    ranks = torchrun(http_server.url_for("train-{000000..000006}.tar"), tmp_path / "out", "resampled")
    assert [len(r["keys"]) for r in ranks] == [8, 8]  # 64 samples / (2 ranks x 4)
    assert all(len(batch) == 4 for r in ranks for batch in r["keys"])
