"""Embedding, the three evaluations end to end on in-memory samples, and the CLI (help, runs, real shards)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from multiview.cli import main
from multiview.encoders.features import Features
from multiview.eval import tasks
from multiview.eval.bundle import EvalBundle
from multiview.eval.embed import embed_field, embed_samples

N_TRAIN, N_TEST, DIM = 120, 40, 6


def make_samples(n: int, seed: int, prefix: str) -> list[dict]:
    """Field "a" [6]; field "b" = a @ M + small noise (another view of the same instance); label from a."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(99)))[0]
    out = []
    for i in range(n):
        a = torch.randn(DIM, generator=gen)
        b = a @ mix + 0.01 * torch.randn(DIM, generator=gen)
        out.append({"__key__": f"{prefix}{i:04d}", "__shard__": "x", "a": a, "b": b, "label": int(a[0] > 0)})
    return out


SPLITS = {"train": make_samples(N_TRAIN, 0, "tr"), "test": make_samples(N_TEST, 1, "te")}


def samples_fn(split: str):
    return iter(SPLITS[split])


class LinearEncoder(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.lin.weight.data.copy_(weight)

    def forward(self, x: torch.Tensor) -> Features:
        return Features(self.lin(x))


def bundle() -> EvalBundle:
    """ "a" embedded as itself, "b" mapped back by the inverse mix: a perfect cross-view encoder pair."""
    mix = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(99)))[0]
    return EvalBundle(
        encoders={"a": LinearEncoder(torch.eye(DIM)), "b": LinearEncoder(mix)},  # (a @ mix) @ mix.T = a
        transforms={"a": lambda s: s["a"], "b": lambda s: s["b"]},
        recipe={"name": "toy"},
    )


# ------------------------------------------------------------------------------------------------ embed


def test_embedding_is_batch_size_invariant_and_ordered():
    b = bundle()
    one = embed_field(SPLITS["test"], b.encoders["b"], b.transforms["b"], "b", batch_size=1)
    many = embed_samples(SPLITS["test"], {"b": (b.encoders["b"], b.transforms["b"])}, batch_size=7)["b"]
    assert one.embeddings.shape == (N_TEST, DIM)
    assert torch.allclose(one.embeddings, many.embeddings, atol=1e-6)
    assert one.keys == [s["__key__"] for s in SPLITS["test"]]
    assert one.labels.tolist() == [s["label"] for s in SPLITS["test"]]
    a = torch.stack([s["a"] for s in SPLITS["test"]])
    assert torch.allclose(many.embeddings, a, atol=0.05)  # the toy encoders undo the mix


def test_embedding_errors_name_the_sample():
    b = bundle()
    partial = [dict(s) for s in SPLITS["test"][:3]]
    del partial[1]["label"]
    with pytest.raises(ValueError, match=r"missing from 1 of 3 samples \(first: 'te0001'\)"):
        embed_field(partial, b.encoders["a"], b.transforms["a"], "a")
    with pytest.raises(TypeError, match="encoder of field 'a' returned Tensor; expected Features"):
        embed_field(SPLITS["test"], nn.Identity(), b.transforms["a"], "a")
    ragged = [{"__key__": f"r{i}", "v": torch.zeros(3 + i)} for i in range(3)]
    with pytest.raises(ValueError, match=r"field 'v' gave inputs of different shapes .* starting at sample 'r0'"):
        embed_field(ragged, nn.Identity(), lambda s: s["v"], "v", label_field=None)
    with pytest.raises(ValueError, match="no samples to embed"):
        embed_field([], b.encoders["a"], b.transforms["a"], "a")
    with pytest.raises(ValueError, match="no encoder or transform for field 'c'"):
        b.check_field("c")


def test_retrieval_compares_a_pair_through_its_pair_heads(tmp_path):
    """Both encoders are the identity, so "b" stays mixed; only the (b, a) head undoes the mix. Retrieval of the
    pair must go through the heads (R@1 = 1), while the maps and probes keep the encoder outputs."""
    mix = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(99)))[0]
    plain = EvalBundle(
        encoders={"a": LinearEncoder(torch.eye(DIM)), "b": LinearEncoder(torch.eye(DIM))},
        transforms={"a": lambda s: s["a"], "b": lambda s: s["b"]},
    )
    heads = {("a", "b"): nn.Identity(), ("b", "a"): nn.Linear(DIM, DIM, bias=False)}
    heads[("b", "a")].weight.data.copy_(mix)  # x @ mix.T undoes a @ mix
    with_heads = EvalBundle(encoders=plain.encoders, transforms=plain.transforms, pair_heads=heads)
    common = dict(data=tmp_path, query="a", gallery="b", samples_fn=samples_fn, plots=False, compare_baseline=False)
    reports = {
        name: tasks.run_retrieval("toy.ckpt", bundle=b, out_dir=tmp_path / name, **common)
        for name, b in (("plain", plain), ("heads", with_heads))
    }
    r1 = {name: rep["results"]["learned"]["a<->b"]["a->b"]["instance"]["R@1"] for name, rep in reports.items()}
    assert r1["heads"] == 1.0 and r1["plain"] < 0.5
    assert reports["heads"]["settings"]["pair_heads"] == ["a<->b"] and reports["plain"]["settings"]["pair_heads"] == []
    xa, xb = torch.randn(3, DIM), torch.randn(3, DIM)
    assert plain.project_pair("a", "b", xa, xb) == (xa, xb)
    assert torch.allclose(with_heads.project_pair("b", "a", xb, xa)[0], xb @ mix.T, atol=1e-6)  # addmm vs @


# ------------------------------------------------------------------------------------------------ tasks


def test_run_retrieval_learned_with_cca_baseline(tmp_path):
    rep = tasks.run_retrieval(
        "toy.ckpt",
        data=tmp_path,
        query="a",
        gallery="b",
        bundle=bundle(),
        samples_fn=samples_fn,
        out_dir=tmp_path / "out",
        grid_queries=3,
        cca_components=4,
        command="cmd",
    )
    learned = rep["results"]["learned"]["a<->b"]
    assert learned["a->b"]["instance"]["R@1"] == 1.0 and learned["b->a"]["instance"]["median_rank"] == 1.0
    assert learned["a->b"]["class"]["P@1"] == 1.0
    assert set(rep["results"]) == {"learned", "cca"}
    assert rep["results"]["cca"]["a<->b"]["b->a"]["instance"]["R@1"] > 0.5  # linear views: CCA does well too
    assert rep["settings"]["paired"] is True and rep["checkpoint"] == "toy.ckpt" and rep["recipe"] == {"name": "toy"}
    on_disk = json.loads((tmp_path / "out" / "retrieval.json").read_text())
    assert on_disk["rows"] == rep["rows"]
    for name in rep["figures"].values():
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
    assert any(name.startswith("grid_b-a") for name in rep["figures"].values())
    assert "![" in (tmp_path / "out" / "retrieval.md").read_text()


def test_run_retrieval_class_pairing_from_the_manifest(tmp_path):
    pairing = "random within the class: class-level retrieval only"  # as the avdigits builder writes it
    manifest = {"format": "multiview-shards", "version": 1, "fields": {}, "extra": {"pairing": pairing},
                "splits": {"test": {"count": 0, "shards": []}}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    rep = tasks.run_retrieval(
        None,
        data=tmp_path,
        query="a",
        gallery="b",
        baseline="raw",
        samples_fn=samples_fn,
        out_dir=tmp_path / "out",
        plots=False,
        ks=(1, 5, 10_000),
    )
    assert rep["settings"]["paired"] is False and "manifest" in rep["settings"]["paired_reason"]
    block = rep["results"]["cca"]["a<->b"]["a->b"]
    assert set(block) == {"class"} and rep["settings"]["ks"] == [1, 5]  # k beyond the gallery is dropped
    assert 0.0 <= block["class"]["mAP"] <= 1.0


def test_run_linear_learned_identity_equals_raw(tmp_path):
    rep = tasks.run_linear(
        None,
        data=tmp_path,
        fields=["a", "b"],
        bundle=bundle(),
        samples_fn=samples_fn,
        out_dir=tmp_path,
        weight_decays=(1e-3, 1e-1),
        plots=False,
    )
    learned, raw = rep["results"]["learned"], rep["results"]["raw"]
    assert set(learned) == {"a", "b", "fused"}
    # "a" is embedded as itself, so the learned probe sees exactly the raw features
    assert learned["a"]["top1"] == raw["a"]["top1"] and learned["a"]["top1"] > 0.9
    assert rep["settings"]["fused"] is True and (tmp_path / "linear.json").is_file()


def test_run_knn_raw_only(tmp_path):
    rep = tasks.run_knn(None, data=tmp_path, fields=["a"], baseline="raw", samples_fn=samples_fn, out_dir=tmp_path)
    assert set(rep["results"]) == {"raw"} and rep["results"]["raw"]["a"]["top1"] > 0.65  # label = sign of one of 6 dims
    assert rep["settings"]["k"] == 20 and (tmp_path / "map_a.png").is_file()


def test_hit_grades():
    rows, hits = np.array([0, 1]), np.array([[0, 2, 3], [2, 3, 1]])
    labels = np.array([0, 1, 0, 1])
    assert tasks.hit_grades(rows, hits, labels, paired=True).tolist() == [[2, 1, 0], [0, 1, 2]]
    assert tasks.hit_grades(rows, hits, labels, paired=False).tolist() == [[2, 2, 0], [0, 2, 2]]
    assert tasks.hit_grades(rows, hits, None, paired=True).tolist() == [[2, 0, 0], [0, 0, 2]]


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("instance: every field of a sample comes from the same row", "instance"),
        ("class", "class"),
        ("random within the class: class-level retrieval only", "class"),
    ],
)
def test_pairing_level_reads_the_builders_text(text, level):
    assert tasks.pairing_level(text) == level
    assert tasks.resolve_paired("auto", {"extra": {"pairing": text}})[0] is (level == "instance")
    assert tasks.resolve_paired("yes", {"extra": {"pairing": text}})[0] is True


def test_pairing_level_rejects_unknown_text():
    with pytest.raises(ValueError, match="extra.pairing is 'shuffled'"):
        tasks.pairing_level("shuffled")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "give a checkpoint"),
        ({"checkpoint": "x", "baseline": "raw"}, "drop CKPT or drop --baseline"),
        ({"baseline": "raw", "query": "a", "gallery": "a"}, "same field 'a'"),
        ({"baseline": "raw", "all_pairs": True, "fields": ["a"]}, "at least two fields"),
        ({"baseline": "raw", "query": "a", "gallery": "b", "paired": "maybe"}, "'auto', 'yes' or 'no', got 'maybe'"),
    ],
)
def test_run_retrieval_rejects_bad_requests(tmp_path, kwargs, match):
    kwargs = {"query": "a", "gallery": "b", **kwargs}
    checkpoint = kwargs.pop("checkpoint", None)
    with pytest.raises(ValueError, match=match):
        tasks.run_retrieval(checkpoint, data=tmp_path, samples_fn=samples_fn, out_dir=tmp_path, **kwargs)


# -------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("task", ["retrieval", "linear", "knn", "table"])
def test_cli_help(task, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", task, "--help"])
    assert exit_info.value.code == 0
    assert "usage: multiview eval " + task in capsys.readouterr().out


def test_cli_retrieval_baseline_raw_on_in_memory_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tasks, "default_samples_fn", lambda data: samples_fn)
    rc = main(
        [
            "eval",
            "retrieval",
            "--baseline",
            "raw",
            "--data",
            str(tmp_path),
            "--query",
            "a",
            "--gallery",
            "b",
            "--out",
            str(tmp_path / "o"),
            "--no-plots",
            "--cca-components",
            "3",
        ]
    )
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["task"] == "retrieval" and last["json"] == f"{tmp_path / 'o'}/retrieval.json"
    report = json.loads((tmp_path / "o" / "retrieval.json").read_text())
    assert report["command"].startswith("multiview eval retrieval --data")
    assert "--baseline raw" in report["command"] and report["checkpoint"] is None
    assert main(["eval", "table", str(tmp_path / "o" / "retrieval.json")]) == 0
    assert "| cca |" in capsys.readouterr().out


def _write_tiny_shards(root):
    import multiview.data as data

    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 40), ("test", 20)):
        rows = []
        for i in range(n):
            label = i % 2
            image = (rng.random((8, 8)) * 60 + 150 * label).astype(np.uint8)
            trace = (rng.standard_normal((3, 16)) + 2 * label).astype(np.float32)
            rows.append({"__key__": f"{split}{i:03d}", "image.png": image, "acc.npy": trace, "label.cls": label})
        splits[split] = rows
    data.write_dataset(root, splits, builder="test-eval", maxcount=16)
    return root


def test_cli_on_a_tiny_shard_set_with_baseline_raw(tmp_path, capsys):
    shards = _write_tiny_shards(tmp_path / "shards")
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--baseline",
                "raw",
                "--data",
                str(shards),
                "--query",
                "image",
                "--gallery",
                "acc",
                "--out",
                str(out / "r"),
                "--cca-components",
                "2",
                "--grid-queries",
                "2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "linear",
                "--baseline",
                "raw",
                "--data",
                str(shards),
                "--out",
                str(out / "l"),
                "--weight-decays",
                "1e-2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "knn",
                "--baseline",
                "raw",
                "--data",
                str(shards),
                "--fields",
                "image",
                "acc",
                "--k",
                "5",
                "--out",
                str(out / "k"),
                "--no-plots",
            ]
        )
        == 0
    )
    retrieval = json.loads((out / "r" / "retrieval.json").read_text())
    assert retrieval["results"]["cca"]["image<->acc"]["image->acc"]["class"]["P@1"] >= 0.5
    linear = json.loads((out / "l" / "linear.json").read_text())
    assert set(linear["results"]["raw"]) == {"image", "acc", "fused"}  # fields from the manifest, label left out
    assert linear["results"]["raw"]["image"]["top1"] > 0.9  # brightness gives the label away
    knn = json.loads((out / "k" / "knn.json").read_text())
    assert knn["results"]["raw"]["acc"]["top1"] > 0.9
    assert (out / "r" / "retrieval.md").is_file() and any((out / "r").glob("grid_*.png"))


# ------------------------------------------------------------------------------------------------ probe features


class MapEncoder(nn.Module):
    """``[B, 6]`` -> global = x[:, :2]; a 2-D map ``[B, 2, 4, 4]`` whose top-left quadrant holds x[:, 2:4] and
    the rest 0; a 1-D map ``[B, 1, 4]`` holding x[:, 4] in its first half."""

    def forward(self, x: torch.Tensor) -> Features:
        b = x.shape[0]
        grid = torch.zeros(b, 2, 4, 4)
        grid[:, :, :2, :2] = x[:, 2:4, None, None]
        line = torch.zeros(b, 1, 4)
        line[:, 0, :2] = x[:, 4:5]
        return Features(x[:, :2], {"s8": grid, "t": line})


def test_probe_features_maps_pool_every_local_map_by_name():
    maps = EvalBundle(encoders={"a": MapEncoder()}, transforms={"a": lambda s: s["a"]}).with_probe_features("maps", 2)
    x = torch.arange(12.0).reshape(2, 6)
    got = maps.encoders["a"](x).global_
    # global (2) + s8 pooled 2x2 (2 channels x 4 cells: the top-left cell is x[2:4]) + t pooled to 2 (x[4], 0)
    assert got.shape == (2, 2 + 8 + 2)
    torch.testing.assert_close(got[:, :2], x[:, :2])
    torch.testing.assert_close(got[:, 2:10].reshape(2, 2, 2, 2)[:, :, 0, 0], x[:, 2:4])
    assert got[:, 2:10].reshape(2, 2, 2, 2)[:, :, 1, 1].abs().sum() == 0
    torch.testing.assert_close(got[:, 10:], torch.stack([x[:, 4], torch.zeros(2)], 1))


def test_probe_features_errors_and_global_is_unchanged():
    plain = bundle()
    assert plain.with_probe_features("global") is plain
    with pytest.raises(ValueError, match="field 'a': its encoder returns no local maps"):
        plain.with_probe_features("maps").encoders["a"](torch.zeros(1, DIM))
    with pytest.raises(ValueError, match="expected one of \\['global', 'maps', 'trunk', 'trunk_maps'\\]"):
        plain.with_probe_features("pixels")
    with pytest.raises(ValueError, match="grid must be an int >= 1"):
        plain.with_probe_features("maps", 0)


def test_run_linear_on_pooled_maps_reads_what_the_global_vector_lacks(tmp_path):
    # The label is x[0] > 0 (see make_samples): the global vector of MapEncoder holds x[:2], so both probes see it;
    # a label on x[2] would only be readable from the maps. Relabel to x[2] > 0 and compare.
    relabelled = {k: [{**s, "label": int(s["a"][2] > 0)} for s in v] for k, v in SPLITS.items()}
    enc = EvalBundle(encoders={"a": MapEncoder()}, transforms={"a": lambda s: s["a"]})
    kwargs = dict(data=tmp_path, fields=["a"], bundle=enc, samples_fn=lambda split: iter(relabelled[split]))
    kwargs |= dict(compare_baseline=False, weight_decays=(1e-3,), plots=False)
    glob = tasks.run_linear(None, out_dir=tmp_path / "g", **kwargs)
    maps = tasks.run_linear(None, out_dir=tmp_path / "m", features="maps", grid=2, **kwargs)
    assert maps["results"]["learned"]["a"]["top1"] > 0.95 > 0.8 > glob["results"]["learned"]["a"]["top1"]
    assert maps["settings"]["features"] == "maps" and maps["settings"]["grid"] == 2
    assert glob["settings"]["features"] == "global" and "grid" not in glob["settings"]


def test_probe_features_trunk_reads_before_the_projection_head():
    from multiview.encoders.timm_encoder import TimmEncoder

    enc = TimmEncoder("test_resnet", in_chans=1, out_dim=7).eval()
    trunk = EvalBundle(encoders={"img": enc}, transforms={}).with_probe_features("trunk")
    x = torch.randn(3, 1, 32, 32)
    got = trunk.encoders["img"](x).global_
    torch.testing.assert_close(got, enc.trunk_forward(x)[0])
    assert got.shape[1] == enc.trunk.num_features != enc(x).global_.shape[1] == 7
    with pytest.raises(ValueError, match="field 'a': its encoder \\(LinearEncoder\\) has no trunk_forward"):
        bundle().with_probe_features("trunk")
