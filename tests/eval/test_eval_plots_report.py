"""Plots write valid PNGs for every thumbnail kind; reports carry provenance and tabulate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from multiview.eval.plots import (
    embedding_map,
    mi_directions,
    plot_embedding_map,
    plot_recall_curves,
    plot_retrieval_grid,
    plot_training_curves,
    recall_curve,
    training_curves_figure,
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


# ------------------------------------------------------------------------------------------- training curves


def _records(views, steps=5, extra=None):
    """metrics.jsonl rows of a CMC run over ``views``: one estimate per direction, rising to 2 nats."""
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "loss": 10.0 / step}
        for i, a in enumerate(views):
            for j, b in enumerate(views):
                if a != b:
                    row[f"cmc/mi_{a}_{b}"] = 2.0 * step / steps - 0.01 * (i + j)
        rows.append({**row, **(extra or {})})
    return rows


def test_mi_directions_split_keys_by_view_names():
    keys = ["cmc/mi_cam_0_cam_1", "cmc/mi_cam_1_cam_0", "amdim/mi_1t5", "cmc/temperature"]
    assert mi_directions(keys, ["cam_0", "cam_1"]) == {"cam_0": {"cam_1": keys[0]}, "cam_1": {"cam_0": keys[1]}}
    assert mi_directions(["cmc/mi_pix_fac", "x/mi_1t5"]) == {"pix": {"fac": "cmc/mi_pix_fac"}}
    assert mi_directions(["cmc/mi_cam_0_cam_1"]) == {}  # ambiguous without the view names


def test_training_curves_facet_by_view_and_draw_the_infonce_ceiling(tmp_path):
    """Six views: 30 directed estimates, drawn as one panel per view of five partner lines (not one panel of 30),
    each with the ceiling log(batch); one shared legend of the six views and the ceiling."""
    import math

    views = ["pix", "fac", "fou", "kar", "zer", "mor"]
    fig = training_curves_figure(_records(views), mi_ceiling=math.log(250), views=views)
    axes = fig.axes
    mi_axes = [ax for ax in axes if ax.get_title().startswith("MI estimate")]
    assert [ax.get_title().rpartition("from ")[2] for ax in mi_axes] == views
    for ax in mi_axes:
        curves = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
        assert len(curves) == 5
        (ceiling,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert ceiling.get_ydata()[0] == pytest.approx(math.log(250))
        assert ax.get_ylim()[1] > math.log(250)
    colour = {ax.get_title(): {ln.get_label(): ln.get_color() for ln in ax.get_lines()} for ax in mi_axes}
    assert colour["MI estimate (nats), from pix"]["kar"] == colour["MI estimate (nats), from fac"]["kar"]
    legend = [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    labels = [t.get_text() for t in legend[0].get_texts()]
    assert len(legend) == 1 and labels[:6] == views and labels[6] == "InfoNCE ceiling 5.52"
    assert_png(plot_training_curves(_records(views), tmp_path / "curves.png", mi_ceiling=math.log(250), views=views))


def test_training_curves_keep_estimates_that_are_not_pairs(tmp_path):
    records = [{"step": s, "loss": 1.0 / s, "amdim/mi_1t5": 0.1 * s, "amdim/mi_5t5": 0.2 * s} for s in (1, 2, 3)]
    fig = training_curves_figure(records)
    (mi_ax,) = [ax for ax in fig.axes if ax.get_title().startswith("MI estimate")]
    assert sorted(line.get_label() for line in mi_ax.get_lines()) == ["1t5", "5t5"]
    assert_png(plot_training_curves(records[:1] * 2, tmp_path / "c.png"))
    with pytest.raises(ValueError, match="no metric records"):
        training_curves_figure([])
