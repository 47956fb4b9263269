"""Plots write valid PNGs for every thumbnail kind; reports carry provenance and tabulate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from multiview.eval.plots import (
    embedding_map,
    plot_embedding_map,
    plot_recall_curves,
    plot_retrieval_grid,
    recall_curve,
)
from multiview.eval.report import (
    build_report,
    load_report,
    markdown_table,
    tabulate_reports,
    write_json,
    write_markdown,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_px: int = 100):
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_px and img.shape[1] >= min_px
    assert img.std() > 0  # not a blank canvas


def test_recall_curve_values():
    assert recall_curve(np.array([1, 2, 2, 5]), 5).tolist() == [0.25, 0.75, 0.75, 0.75, 1.0]


def test_recall_curves_png(tmp_path):
    path = plot_recall_curves({"a->b": np.array([1, 3, 8]), "b->a": np.array([2, 2, 40])}, tmp_path / "r.png")
    assert_png(path)


def test_retrieval_grid_png_with_every_thumbnail_kind(tmp_path):
    image = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
    grey = torch.randint(0, 255, (1, 16, 15), dtype=torch.uint8)
    audio = (torch.randn(1, 4000) * 0.1, 8000)
    sensor = torch.randn(3, 50)
    vector = torch.randn(12)
    queries = [(image, None), (audio[0], audio[1])]
    hits = [[(grey, None), (sensor, None), (vector, None)], [(audio[0], audio[1]), (image, None), (vector, None)]]
    correct = np.array([[True, False, True], [False, False, True]])
    path = plot_retrieval_grid(queries, hits, correct, tmp_path / "g.png", title="t", query_titles=["q0", "q1"])
    assert_png(path)
    img = imread(path)[..., :3]
    green = np.all(np.abs(img - np.array([0x1A, 0x98, 0x50]) / 255) < 0.02, axis=-1).sum()
    red = np.all(np.abs(img - np.array([0xD7, 0x30, 0x27]) / 255) < 0.02, axis=-1).sum()
    assert green > 50 and red > 50  # correct and wrong hits are framed in their colours


def test_retrieval_grid_marks_same_class_hits_amber(tmp_path):
    item = (torch.zeros(4, 4, dtype=torch.uint8), None)
    path = plot_retrieval_grid([item], [[item, item]], np.array([[2, 1]]), tmp_path / "g.png")
    img = imread(path)[..., :3]
    amber = np.all(np.abs(img - np.array([0xF0, 0xA3, 0x0A]) / 255) < 0.02, axis=-1).sum()
    red = np.all(np.abs(img - np.array([0xD7, 0x30, 0x27]) / 255) < 0.02, axis=-1).sum()
    assert amber > 50 and red == 0


def test_retrieval_grid_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="grid shapes disagree"):
        plot_retrieval_grid([(torch.zeros(3), None)], [[(torch.zeros(3), None)]], np.ones((1, 2)), tmp_path / "x.png")


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_map_png(tmp_path, method):
    x = torch.cat([torch.randn(30, 6) + 5 * torch.eye(6)[i] for i in range(3)])
    labels = np.repeat(np.arange(3), 30)
    assert_png(plot_embedding_map(x, labels, tmp_path / f"{method}.png", method=method))


def test_pca_map_separates_separable_clusters():
    x = torch.cat([torch.randn(30, 6) * 0.1 + 5 * torch.eye(6)[i] for i in range(3)])
    xy = embedding_map(x, "pca")
    centres = np.stack([xy[i * 30 : (i + 1) * 30].mean(0) for i in range(3)])
    spread = max(xy[i * 30 : (i + 1) * 30].std(0).max() for i in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 5 * spread


def test_embedding_map_rejects_unknown_method():
    with pytest.raises(ValueError, match="'pca' or 'tsne', got 'umap'"):
        embedding_map(torch.randn(5, 3), "umap")


def retrieval_results():
    return {
        "learned": {"a<->b": {"a->b": {"instance": {"R@1": 0.9, "n_queries": 10}}, "b->a": {"instance": {"R@1": 0.8}}}},
        "cca": {"a<->b": {"a->b": {"instance": {"R@1": 0.5, "n_queries": 10}}, "b->a": {"instance": {"R@1": 0.6}}}},
    }


def test_report_json_and_markdown(tmp_path):
    (tmp_path / "r.png").write_bytes(b"")
    report = build_report(
        "retrieval",
        retrieval_results(),
        checkpoint="ck/step_1",
        data="shards/x",
        split="test",
        command=["multiview", "eval", "retrieval"],
        settings={"paired": True},
        figures={"recall": "r.png"},
    )
    assert report["command"] == "multiview eval retrieval" and report["checkpoint"] == "ck/step_1"
    assert {"task", "data", "split", "created", "results", "rows", "figures", "settings"} <= set(report)
    rows = {(r["method"], r["subject"], r["metric"]): r["value"] for r in report["rows"]}
    assert rows == {
        ("learned", "a->b", "R@1"): 0.9,
        ("learned", "b->a", "R@1"): 0.8,
        ("cca", "a->b", "R@1"): 0.5,
        ("cca", "b->a", "R@1"): 0.6,
    }  # counts (n_*) are not metrics
    path = write_json(report, tmp_path / "retrieval.json")
    assert load_report(path)["rows"] == report["rows"]
    md = write_markdown(report, tmp_path / "retrieval.md").read_text()
    assert "![recall](r.png)" in md and "ck/step_1" in md
    assert "| retrieval | a->b | instance | R@1 | 0.900 | 0.500 | +0.400 |" in md


def test_markdown_table_pivots_methods_with_deltas():
    rows = [
        {"task": "linear", "method": "raw", "subject": "pix", "level": "test", "metric": "top1", "value": 0.9},
        {"task": "linear", "method": "learned", "subject": "pix", "level": "test", "metric": "top1", "value": 0.95},
        {"task": "linear", "method": "learned", "subject": "fused", "level": "test", "metric": "top1", "value": 0.97},
    ]
    table = markdown_table(rows).splitlines()
    assert table[0] == "| task | subject | level | metric | learned | raw | learned - raw |"
    assert table[2] == "| linear | pix | test | top1 | 0.950 | 0.900 | +0.050 |"
    assert table[3] == "| linear | fused | test | top1 | 0.970 | - | - |"


def test_tabulate_reports_and_schema_check(tmp_path):
    report = build_report(
        "knn", {"raw": {"pix": {"top1": 0.5}}}, checkpoint=None, data="/s/mfeat", split="test", command="c"
    )
    write_json(report, tmp_path / "knn.json")
    assert "| mfeat | knn | pix | test | top1 | 0.500 |" in tabulate_reports([tmp_path / "knn.json"])
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match="bad.json: schema 'other'"):
        load_report(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="task must be"):
        build_report("segmentation", {}, checkpoint=None, data="d", split="s", command="c")
