"""``multiview quickstart`` end to end at a reduced size: shards, pretraining, evaluation, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_quickstart_end_to_end_small(tmp_path):
    out = tmp_path / "qs"
    cmd = [
        sys.executable,
        "-m",
        "multiview",
        "quickstart",
        "--out",
        str(out),
        "--steps",
        "6",
        "log.every=2",
        "eval.0.fields=[pix,fac]",
        "eval.1.fields=[pix,fac]",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {out / 'report.md'}" in done.stdout
    assert "R@1 pix->fac" in done.stdout and "linear top-1 fused" in done.stdout
    report = (out / "report.md").read_text()
    assert "loss_curve.png" in report and "eval/retrieval/retrieval.md" in report
    assert (out / "loss_curve.png").stat().st_size > 1000
    for name in ("retrieval/retrieval.json", "retrieval/retrieval.md", "linear/linear.json"):
        assert (out / "eval" / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    learned = [r for r in summary["retrieval"] if r["method"] == "learned" and r["metric"] == "R@1"]
    assert {r["subject"] for r in learned} >= {"pix->fac", "fac->pix"}
    assert all(0.0 <= r["value"] <= 1.0 for r in learned)
    assert (out / "shards" / "mfeat" / "manifest.json").is_file()
    assert sorted(p.name for p in (out / "runs" / "cmc_mfeat" / "checkpoints").iterdir()) == ["step_000006"]


def test_infonce_ceiling_is_log_of_the_batch_of_one_step():
    import math

    from multiview.quickstart import infonce_ceiling
    from multiview.train.recipe import load_recipe

    ceiling, views = infonce_ceiling(load_recipe("cmc_mfeat"))
    assert ceiling == math.log(250) and views == ["pix", "fac", "fou", "kar", "zer", "mor"]
    assert infonce_ceiling(load_recipe("cmc_mfeat", ["train.grad_accum=2"]))[0] == math.log(125)
    assert infonce_ceiling(load_recipe("tiny_dim")) == (None, None)  # JSD: no such ceiling
