"""Class mAP per group of queries (``--group-by``): the per-group means are the overall mean's parts, the
groups come from a field or a JSON key of the samples, and bad requests name the sample and the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_eval_tasks_cli import bundle, samples_fn  # tests/eval is on sys.path (pytest prepend mode)

from multiview.eval import tasks
from multiview.eval.groups import MAX_GROUPS, group_names
from multiview.eval.retrieval import class_metrics


def _average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one query by its definition: the mean of precision@rank over the ranks of the positives."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def test_group_maps_are_the_mean_ap_of_each_groups_queries():
    g = torch.Generator().manual_seed(0)
    query, gallery = torch.randn(30, 8, generator=g), torch.randn(25, 8, generator=g)
    ql, gl = torch.randint(0, 3, (30,), generator=g), torch.randint(0, 3, (25,), generator=g)
    groups = ["slow" if i % 3 else "fast" for i in range(30)]
    out = class_metrics(query, gallery, ql, gl, query_groups=groups)
    qn, gn = torch.nn.functional.normalize(query, dim=1), torch.nn.functional.normalize(gallery, dim=1)
    scores = (qn @ gn.T).numpy()
    aps = np.array([_average_precision(scores[i], (gl == ql[i]).numpy().astype(float)) for i in range(30)])
    for name in ("fast", "slow"):
        rows = np.array([gr == name for gr in groups])
        assert out["groups"][name]["n_queries"] == rows.sum()
        assert out["groups"][name]["mAP"] == pytest.approx(aps[rows].mean(), abs=1e-6)
    weighted = sum(v["mAP"] * v["n_queries"] for v in out["groups"].values()) / out["n_queries"]
    assert weighted == pytest.approx(out["mAP"], abs=1e-9)


def test_queries_without_a_positive_are_left_out_of_their_group():
    query = torch.eye(4)
    gallery = torch.eye(4)[:3]
    out = class_metrics(query, gallery, [0, 1, 2, 3], [0, 1, 2], ks=(1,), query_groups=["a", "a", "b", "b"])
    assert out["groups"] == {"a": {"mAP": 1.0, "n_queries": 2}, "b": {"mAP": 1.0, "n_queries": 1}}
    with pytest.raises(ValueError, match="3 entries for 4 queries"):
        class_metrics(query, gallery, [0, 1, 2, 3], [0, 1, 2], ks=(1,), query_groups=["a", "a", "b"])


def test_group_names_read_a_field_or_a_json_key_and_cut_numbers_at_edges():
    samples = [{"__key__": f"c{i}", "accent": "en" if i < 2 else "fr", "meta": {"speed": s}}
               for i, s in enumerate([80, 150, 199.5, 260])]  # fmt: skip
    assert group_names(samples, "accent") == ["en", "en", "fr", "fr"]
    assert group_names(samples, "meta.speed") == ["80", "150", "199.5", "260"]
    assert group_names(samples, "meta.speed", [120, 200]) == ["<120", "120-200", "120-200", ">=200"]


@pytest.mark.parametrize(
    ("spec", "edges", "match"),
    [
        ("meta.wpm", None, r"sample 'c0' field 'meta' has no key 'wpm' \(keys: \['speed', 'word'\]\)"),
        ("voice", None, r"sample 'c0' has no field 'voice' .*\['meta'\]"),
        ("meta.word", [1.0], "expected a finite number, got 'one'"),
        ("meta.speed", [200.0, 120.0], "expected increasing numbers"),
    ],
)
def test_bad_group_requests_name_the_sample_and_the_field(spec, edges, match):
    samples = [{"__key__": "c0", "meta": {"speed": 80, "word": "one"}}]
    with pytest.raises(ValueError, match=match):
        group_names(samples, spec, edges)


def test_a_continuous_field_asks_for_edges():
    samples = [{"__key__": f"c{i}", "meta": {"snr": i / 7}} for i in range(MAX_GROUPS + 1)]
    with pytest.raises(ValueError, match="cut a numeric field into ranges with --group-edges"):
        group_names(samples, "meta.snr")


def test_run_retrieval_reports_class_map_per_group(tmp_path):
    common = {"query": "a", "gallery": "b", "samples_fn": samples_fn, "plots": False, "paired": "no"}
    rep = tasks.run_retrieval("toy.ckpt", bundle=bundle(), out_dir=tmp_path / "g", group_by="label", **common)
    block = rep["results"]["learned"]["a<->b"]["a->b"]["class"]
    assert set(block["groups"]) == {"0", "1"}
    assert sum(g["n_queries"] for g in block["groups"].values()) == block["n_queries"]
    levels = {r["level"] for r in rep["rows"]}
    assert {"class [label 0]", "class [label 1]"} <= levels
    assert "class [label 1]" in (tmp_path / "g" / "retrieval.md").read_text()
    with pytest.raises(ValueError, match="has no field 'speed'"):
        tasks.run_retrieval("toy.ckpt", bundle=bundle(), out_dir=tmp_path / "h", group_by="speed", **common)


def test_group_edges_without_group_by_is_refused_naming_the_option(tmp_path):
    with pytest.raises(ValueError, match="group_edges: needs --group-by"):
        tasks.run_retrieval("toy.ckpt", bundle=bundle(), out_dir=tmp_path, query="a", gallery="b",
                            samples_fn=samples_fn, plots=False, group_edges=[0.5])  # fmt: skip


def test_groups_need_labels(tmp_path):
    unlabelled = [{k: v for k, v in s.items() if k != "label"} | {"kind": "x"} for s in samples_fn("test")]
    with pytest.raises(ValueError, match="class mAP per group: the samples have no 'label' labels"):
        tasks.run_retrieval("toy.ckpt", bundle=bundle(), out_dir=tmp_path, query="a", gallery="b", plots=False,
                            samples_fn=lambda split: iter(unlabelled), paired="yes", group_by="kind")  # fmt: skip
