"""Evaluating data a user brought (issue 16, item 3): splits checked before any embedding, the comparison baseline
left out when it has nothing to fit on, fitting on the scored split refused unless asked (and marked), and the
pairing that ``multiview shards write --pairing`` records read by retrieval."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

import multiview.eval.load
from multiview.cli import main
from multiview.data import load_manifest, write_dataset
from multiview.encoders.features import Features
from multiview.eval import tasks
from multiview.eval.base import EvalInputError, run_evaluation
from multiview.eval.bundle import EvalBundle
from multiview.eval.report import SAME_SPLIT_FLAG, SAME_SPLIT_FOOTNOTE, markdown_table

DIM = 6
MIX = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(99)))[0]


def rows(n: int, seed: int, prefix: str) -> list[dict]:
    """``a.npy`` [6]; ``b.npy`` = a @ MIX + noise (another view of the same instance); label from a."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        a = torch.randn(DIM, generator=gen)
        b = a @ MIX + 0.01 * torch.randn(DIM, generator=gen)
        out.append({"__key__": f"{prefix}{i:03d}", "a.npy": a.numpy(), "b.npy": b.numpy(), "label.cls": int(a[0] > 0)})
    return out


@pytest.fixture(scope="module")
def test_only(tmp_path_factory):
    """A user's shard folder holding a ``test`` split only."""
    root = tmp_path_factory.mktemp("test_only")
    write_dataset(root, {"test": rows(30, 1, "te")}, builder="user")
    return root


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("both")
    write_dataset(root, {"train": rows(60, 0, "tr"), "test": rows(30, 1, "te")}, builder="user")
    return root


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, calls: list):
        super().__init__()
        self.weight, self.calls = weight, calls

    def forward(self, x: torch.Tensor) -> Features:
        self.calls.append(x.shape[0])
        return Features(x.float() @ self.weight.T)


def toy_bundle(calls: list | None = None) -> EvalBundle:
    """``a`` as itself, ``b`` mixed back: a perfect cross-view pair; every encoder call is appended to ``calls``."""
    calls = [] if calls is None else calls
    return EvalBundle(
        encoders={"a": Linear(torch.eye(DIM), calls), "b": Linear(MIX, calls)},
        transforms={"a": lambda s: torch.as_tensor(s["a"]), "b": lambda s: torch.as_tensor(s["b"])},
        recipe={"name": "toy"},
    )


# ------------------------------------------------------------------------------- a source without a train split


def test_retrieval_leaves_the_unrequested_baseline_out_and_says_so(test_only, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="multiview.eval"):
        rep = tasks.run_retrieval("toy.ckpt", bundle=toy_bundle(), data=test_only, query="a", gallery="b",
                                  out_dir=tmp_path, plots=False)  # fmt: skip
    assert set(rep["results"]) == {"learned"} and rep["results"]["learned"]["a<->b"]["a->b"]["instance"]["R@1"] == 1.0
    assert rep["settings"]["baseline"] is None
    (note,) = rep["settings"]["notes"]
    assert "the CCA baseline is left out" in note and "no split 'train'; splits are ['test']" in note
    assert "--train-split" in note and "--no-baseline" in note
    assert note in caplog.text  # on stderr in the CLI, before the embedding starts
    assert f"**note**: {note}" in (tmp_path / "retrieval.md").read_text()


@pytest.mark.parametrize(
    ("task", "kwargs", "match"),
    [
        # the baseline was asked for: stop, naming the flag
        ("retrieval", {"checkpoint": "toy.ckpt", "compare_baseline": True},
         r"CCA baseline is fitted on split 'train', .*no split 'train'.*--train-split SPLIT.*or --no-baseline"),
        ("retrieval", {"baseline": "raw"}, r"CCA baseline is fitted on split 'train'.*pass --train-split SPLIT"),
        # probes cannot run without a split to fit on, learned or raw
        ("linear", {"checkpoint": "toy.ckpt"}, r"the linear probe is fitted on split 'train'.*pass --train-split"),
        ("knn", {"checkpoint": "toy.ckpt", "compare_baseline": False}, r"the knn probe is fitted on split 'train'"),
        ("knn", {"baseline": "raw", "split": "val"}, r"cannot evaluate split 'val'.*pass --split SPLIT"),
    ],
)  # fmt: skip
def test_a_missing_split_stops_before_any_embedding(test_only, tmp_path, task, kwargs, match):
    calls: list = []
    kwargs = dict(kwargs)
    checkpoint = kwargs.pop("checkpoint", None)
    if checkpoint:
        kwargs["bundle"] = toy_bundle(calls)
    options = {"query": "a", "gallery": "b"} if task == "retrieval" else {"fields": ["a", "b"]}
    with pytest.raises(EvalInputError, match=match):
        run_evaluation(task, checkpoint, data=test_only, out_dir=tmp_path / "out", **options, **kwargs)
    assert calls == [] and not (tmp_path / "out").exists()


def test_cli_checkpoint_on_a_test_only_source(test_only, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setattr(multiview.eval.load, "load_for_eval", lambda checkpoint: toy_bundle())
    # main() logs to the stderr of the first test that ran it; give it this test's (restored afterwards)
    monkeypatch.setattr(logging.getLogger("multiview"), "handlers", [])
    common = ["--data", str(test_only), "--no-plots"]
    with caplog.at_level(logging.WARNING, logger="multiview.eval"):
        rc = main(
            ["eval", "retrieval", "CKPT", *common, "--query", "a", "--gallery", "b", "--out", str(tmp_path / "r")]
        )
    assert rc == 0 and "the CCA baseline is left out" in caplog.text
    assert json.loads((tmp_path / "r" / "retrieval.json").read_text())["settings"]["baseline"] is None
    capsys.readouterr()
    assert main(["eval", "linear", "CKPT", *common, "--out", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err  # after the log line of the CPU threads chosen (multiview.core.threads)
    assert err.splitlines()[-1].startswith("error: the linear probe is fitted on split 'train'")
    assert "--train-split" in err
    assert "Traceback" not in err and not (tmp_path / "l").exists()


# ------------------------------------------------------------------------------------- fitting on the scored split


@pytest.mark.parametrize("task", ["retrieval", "linear", "knn"])
def test_fitting_on_the_scored_split_is_refused_unless_asked(both, tmp_path, task):
    options = {"query": "a", "gallery": "b"} if task == "retrieval" else {"fields": ["a"], "fuse": False}
    common = dict(data=both, split="test", train_split="test", plots=False, **options)
    with pytest.raises(
        EvalInputError, match=r"fitted and scored on the same data \(split 'test'\).*--allow-same-split"
    ):
        run_evaluation(task, "toy.ckpt", bundle=toy_bundle(), out_dir=tmp_path / "refused", **common)
    assert not (tmp_path / "refused").exists()
    rep = run_evaluation(task, "toy.ckpt", bundle=toy_bundle(), out_dir=tmp_path, allow_same_split=True, **common)
    marked = {r["method"] for r in rep["rows"] if r.get(SAME_SPLIT_FLAG)}
    # retrieval's learned embeddings are not fitted by the evaluation, only its CCA; a probe fits on both
    assert marked == ({"cca"} if task == "retrieval" else {"learned", "raw"})
    assert rep["settings"]["fitted_on_scored_split"] == sorted(marked, key=lambda m: m != "learned")
    assert any("fitted and scored on the same data" in n for n in rep["settings"]["notes"])
    page = (tmp_path / f"{task}.md").read_text()
    assert SAME_SPLIT_FOOTNOTE in page and "*" in page.split("## Metrics")[1]


def test_foreign_shards_without_split_names_are_one_split(tmp_path):
    """Unnamed foreign tars read as any split: 'train' and 'test' are the same shards, so fitting is refused."""
    import shutil

    src = tmp_path / "ours"
    write_dataset(src, {"train": rows(20, 0, "x")}, builder="user")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    shutil.copy(src / "train-000000.tar", foreign / "shard0.tar")
    with pytest.raises(EvalInputError, match=r"splits 'train' and 'test', which resolve to the same shards"):
        tasks.run_knn(None, baseline="raw", data=foreign, fields=["a"], out_dir=tmp_path / "o")


def test_without_a_baseline_nothing_is_fitted_so_any_split_is_fine(test_only, tmp_path):
    rep = tasks.run_retrieval("toy.ckpt", bundle=toy_bundle(), data=test_only, query="a", gallery="b",
                              compare_baseline=False, out_dir=tmp_path, plots=False)  # fmt: skip
    assert set(rep["results"]) == {"learned"} and "notes" not in rep["settings"]


def test_markdown_table_marks_flagged_values_and_their_deltas():
    rows_ = [
        {"task": "linear", "method": "learned", "subject": "a", "level": "test", "metric": "top1", "value": 0.9},
        {"task": "linear", "method": "raw", "subject": "a", "level": "test", "metric": "top1", "value": 0.8,
         SAME_SPLIT_FLAG: True},
    ]  # fmt: skip
    lines = markdown_table(rows_).splitlines()
    assert lines[2] == "| linear | a | test | top1 | 0.900 | 0.800* | +0.100* |"
    assert lines[-1] == SAME_SPLIT_FOOTNOTE
    assert SAME_SPLIT_FOOTNOTE not in markdown_table(rows_[:1])


# ----------------------------------------------------------------------------- pairing recorded by shards write


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
def test_shards_write_pairing_class_gives_class_metrics_without_paired_no(tmp_path, capsys):
    """Rows paired only by class (b is another instance of a's class): written with --pairing class, retrieval
    reports class-level metrics by itself, where before it scored meaningless instance metrics."""
    rng = np.random.default_rng(0)
    lines = ["key,split,a.npy,b.npy,label.cls"]
    (tmp_path / "f").mkdir()
    for split, n in (("train", 40), ("test", 20)):
        for i in range(n):
            label = i % 2
            for name in ("a", "b"):  # independent draws around the class centre: no instance link
                np.save(tmp_path / "f" / f"{split}{i}{name}.npy", (rng.normal(size=4) + 3 * label).astype(np.float32))
            lines.append(f"{split}{i},{split},f/{split}{i}a.npy,f/{split}{i}b.npy,{label}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    shards = tmp_path / "shards"
    assert main(["shards", "write", str(shards), "--from-csv", str(tmp_path / "t.csv"), "--pairing", "class"]) == 0
    manifest = load_manifest(shards)
    assert tasks.pairing_level(manifest["extra"]["pairing"]) == "class"
    assert manifest["builder_args"]["pairing"] == "class"
    out = tmp_path / "r"
    args = ["eval", "retrieval", "--baseline", "raw", "--data", str(shards), "--query", "a", "--gallery", "b"]
    assert main([*args, "--out", str(out), "--no-plots", "--cca-components", "2"]) == 0
    report = json.loads((out / "retrieval.json").read_text())
    assert report["settings"]["paired"] is False and "extra.pairing says 'class:" in report["settings"]["paired_reason"]
    assert {r["level"] for r in report["rows"]} == {"class"} and "--paired no" not in report["command"]
    assert report["results"]["cca"]["a<->b"]["a->b"]["class"]["P@1"] > 0.8
