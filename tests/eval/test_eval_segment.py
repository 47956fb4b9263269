"""``multiview eval segment``: the metrics on hand-made label maps, the map geometry, the mixture path on a toy
bundle with known answers, and the command line end to end on tiny scenes shards with masks (pixels, k-means on
an untrained encoder, a trained mixture checkpoint), with its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from multiview.cli import main
from multiview.encoders.features import Features
from multiview.eval.base import EvalInputError, OptionError, get_evaluation, run_evaluation
from multiview.eval.bundle import EvalBundle
from multiview.eval.segment_maps import cell_centres, interpolation_matrix, labels_from, rgb_to_lab
from multiview.eval.segment_metrics import IGNORE, confusions, mean_se, score_maps

# ------------------------------------------------------------------------------------------------ metrics


def halves(n: int = 1, side: int = 8) -> np.ndarray:
    """``[n, side, side]`` masks: background on the left, the main object (1) on the right."""
    mask = np.zeros((n, side, side), dtype=np.uint8)
    mask[:, :, side // 2 :] = 1
    return mask


def test_a_perfect_map_scores_one_and_so_do_its_components_renamed():
    truth = halves(3)
    truth[:, :2, :2] = 2  # a distractor in a corner
    renamed = np.choose(truth, [3, 0, 1]).astype(np.uint8)  # labels 0, 1, 2 -> components 3, 0, 1
    for pred in (truth, renamed):
        scores = score_maps(pred, truth, k=4, dataset_level=True)
        for level in ("image", "dataset"):
            assert np.allclose(scores[level]["fg_iou"], 1.0) and np.allclose(scores[level]["miou"], 1.0)
        assert np.allclose(scores["image"]["ari"], 1.0)
    assert scores["dataset"]["assignment"].tolist() == [3, 0, 1]


def test_one_component_everywhere_has_the_known_ious():
    truth = np.zeros((1, 10, 10), dtype=np.uint8)
    truth[0, :3] = 1  # 30 % main object
    scores = score_maps(np.zeros_like(truth), truth, k=2, dataset_level=False)["image"]
    # the one component goes to the background (IoU 0.7 beats 0.3); the main object gets the empty component
    assert scores["fg_iou"][0] == pytest.approx(0.0)
    assert scores["miou"][0] == pytest.approx(0.35)
    assert scores["ari"][0] == pytest.approx(0.0)
    truth[0, :7] = 1  # 70 %: now the component goes to the main object
    scores = score_maps(np.zeros_like(truth), truth, k=2, dataset_level=False)["image"]
    assert scores["fg_iou"][0] == pytest.approx(0.7) and scores["miou"][0] == pytest.approx(0.35)


def test_a_label_split_over_two_components_keeps_the_better_part():
    truth = halves(1)
    pred = truth.copy()
    pred[0, :2, 4:] = 2  # a quarter of the object (8 of 32 pixels) in a third component: counted wrong
    scores = score_maps(pred, truth, k=3, dataset_level=False)["image"]
    assert scores["fg_iou"][0] == pytest.approx(24 / 32)
    assert scores["miou"][0] == pytest.approx((1.0 + 24 / 32) / 2)


def test_a_random_map_has_ari_near_zero_and_low_iou():
    rng = np.random.default_rng(0)
    truth = halves(20, side=32)
    pred = rng.integers(0, 4, truth.shape).astype(np.uint8)
    scores = score_maps(pred, truth, k=4, dataset_level=True)
    assert abs(np.mean(scores["image"]["ari"])) < 0.01
    assert np.mean(scores["image"]["fg_iou"]) == pytest.approx(0.25 / 1.25, abs=0.02)  # 1/8 of 1/2 over 5/8


def test_dataset_level_assignment_is_one_for_the_whole_split():
    truth = halves(2)
    pred = truth.copy()
    pred[1] = 1 - truth[1]  # the second image swaps the components: fine per image, wrong under one assignment
    scores = score_maps(pred, truth, k=2, dataset_level=True)
    assert np.allclose(scores["image"]["fg_iou"], 1.0)
    assert sorted(scores["dataset"]["fg_iou"].tolist()) == [0.0, 1.0]


def test_ignored_pixels_leave_every_score():
    truth = halves(1)
    pred = truth.copy()
    pred[0, :, :2] = IGNORE
    pred[0, :, 6:] = IGNORE  # half of each label unseen; what is seen is right
    scores = score_maps(pred, truth, k=2, dataset_level=True)
    assert scores["image"]["fg_iou"][0] == 1.0 and scores["image"]["ari"][0] == 1.0
    assert scores["dataset"]["miou"][0] == 1.0


def test_confusions_vectorised_equal_a_loop():
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 3, (5, 6, 7)).astype(np.uint8)
    pred[rng.random(pred.shape) < 0.1] = IGNORE
    truth = rng.integers(0, 4, (5, 6, 7)).astype(np.uint8)
    loop = np.zeros((5, 3, 4), dtype=np.int64)
    for n, y, x in np.ndindex(*pred.shape):
        if pred[n, y, x] != IGNORE:
            loop[n, pred[n, y, x], truth[n, y, x]] += 1
    assert np.array_equal(confusions(pred, truth, 3, 4), loop)


def test_mean_se_and_missing_foreground():
    mean, se, n = mean_se(np.array([0.2, 0.4, np.nan, 0.6]))
    assert (mean, n) == (pytest.approx(0.4), 3) and se == pytest.approx(0.2 / np.sqrt(3))
    empty = np.zeros((1, 4, 4), dtype=np.uint8)  # no main object in the image: its IoU is undefined, not 0
    assert np.isnan(score_maps(empty, empty, k=2, dataset_level=False)["image"]["fg_iou"][0])


# ------------------------------------------------------------------------------------------------ geometry


def test_interpolation_puts_boundaries_between_cell_centres_and_ignores_what_the_crop_cut():
    # 4 cells centred at input pixels 1, 3, 5, 7 of an 8 px input cut from image columns 2..9 of a 12 px image
    cols = interpolation_matrix(12, 12, (2, 8), 8, (1.0, 2.0), 4)
    assert torch.allclose(cols.sum(1), torch.tensor([0, 0] + [1] * 8 + [0, 0], dtype=torch.float32))
    rows = interpolation_matrix(1, 1, (0, 1), 1, (0.5, 1.0), 1)
    assignments = torch.zeros(2, 1, 4)
    assignments[0, 0, :2] = 1.0  # cells 0, 1 -> component 0; cells 2, 3 -> component 1
    assignments[1, 0, 2:] = 1.0
    labels = labels_from(assignments, rows, cols)[0].tolist()
    assert labels == [IGNORE, IGNORE, 0, 0, 0, 0, 1, 1, 1, 1, IGNORE, IGNORE]  # the boundary at input px 4


def test_amdim_cells_sit_at_their_receptive_field_centres():
    from multiview.encoders.amdim import AmdimTrunk

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = AmdimTrunk(img_size=32, ndf=8, embed_dim=16)

    assert cell_centres(Wrapper(), "r7", 32, 7) == (4.0, 4.0)  # window 8, jump 4: cell i sees [4i, 4i + 8)
    assert cell_centres(nn.Identity(), "s8", 32, 4) == (4.0, 8.0)  # padded encoders: spread evenly


@pytest.mark.parametrize("name", ["segment_metrics", "segment_maps"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"multiview.eval.{name}"))
    assert result.attempted > 0 and result.failed == 0


def test_lab_of_known_colours():
    lab = rgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(lab, [[100, 0, 0], [53.24, 80.09, 67.20], [0, 0, 0]], atol=0.01)


# ------------------------------------------------------------------------------------------ toy mixture


class PoolEncoder(nn.Module):
    """``[B, 3, 8, 8]`` -> local "r7" = 2x2 average pool ``[B, 3, 4, 4]``, global = the channel means."""

    def forward(self, x: torch.Tensor) -> Features:
        local = nn.functional.avg_pool2d(x, 2)
        return Features(local.mean((2, 3)), {"r7": local})


class ChannelMixture(nn.Module):
    """A stand-in mixture objective: component c's responsibility is a softmax over the map's channels."""

    n_components, mixture_map = 3, "r7"

    def responsibilities(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert source.shape == target.shape[:2]
        return torch.softmax(10 * target, dim=1)


def toy_samples(n: int = 4) -> list[dict]:
    """8 x 8 images whose top-left quadrant is channel 2, the right half channel 1, the rest channel 0; masks:
    the right half is the main object (1), the top-left quadrant a distractor (2)."""
    out = []
    for i in range(n):
        labels = np.zeros((8, 8), dtype=np.uint8)
        labels[:, 4:] = 1
        labels[:4, :4] = 2
        image = np.stack([(labels == c) * 150 + 20 * i for c in range(3)]).astype(np.uint8)
        out.append({"__key__": f"toy{i}", "img": torch.from_numpy(image), "img_mask": torch.from_numpy(labels[None])})
    return out


def toy_bundle(objectives: dict | None = None) -> EvalBundle:
    return EvalBundle(
        encoders={"img": PoolEncoder()},
        transforms={"img": lambda s: s["img"].float() / 255},
        objectives={"mix": ChannelMixture()} if objectives is None else objectives,
    )


def run_toy(tmp_path, samples=None, **options) -> dict:
    samples = toy_samples() if samples is None else samples
    return run_evaluation("segment", None, bundle=toy_bundle(options.pop("objectives", None)), data=tmp_path,
                          samples_fn=lambda split: iter(samples), out_dir=tmp_path / "out", field="img",
                          **options)  # fmt: skip


def test_mixture_maps_follow_the_responsibilities_and_score_perfectly(tmp_path):
    report = run_toy(tmp_path, plots=False)
    assert report["settings"]["method"] == "mixture" and report["settings"]["k"] == 3  # auto: the mixture
    maps = np.load(tmp_path / "out" / "maps.npz")
    expected = toy_samples()[0]["img_mask"][0].numpy()  # component c = channel c = the mask's label
    assert maps["maps"].shape == (4, 8, 8) and maps["maps"].dtype == np.uint8
    assert all(np.array_equal(m, expected) for m in maps["maps"]) and maps["keys"].tolist()[0] == "toy0"
    values = {(r["level"], r["metric"]): r["value"] for r in report["rows"]}
    assert values[("image", "fg_iou")] == values[("dataset", "fg_iou")] == values[("image", "ari")] == 1.0
    assert values[("image", "fg_iou_se")] == 0.0 and {r["n"] for r in report["rows"]} == {4}


def test_kmeans_on_the_toy_local_maps_recovers_the_layout(tmp_path):
    report = run_toy(tmp_path, method="kmeans", k=3, plots=False)
    values = {(r["level"], r["metric"]): r["value"] for r in report["rows"]}
    assert values[("dataset", "miou")] == pytest.approx(1.0)  # clusters fitted on every image: one assignment
    assert report["settings"]["local_map"] == "r7" and report["results"]["kmeans"]["img"]["dataset"]["assignment"]


def test_limit_segments_the_first_images_only(tmp_path):
    report = run_toy(tmp_path, limit=2, plots=False)
    assert report["settings"]["n_images"] == 2 and {r["n"] for r in report["rows"]} == {2}
    assert np.load(tmp_path / "out" / "maps.npz")["keys"].tolist() == ["toy0", "toy1"]


def test_without_a_mask_the_report_says_so_and_still_writes_maps_and_grids(tmp_path):
    samples = [{k: v for k, v in s.items() if k != "img_mask"} for s in toy_samples()]
    report = run_toy(tmp_path, samples=samples, method="pixels", k=3, grids=1, grid_images=4)
    assert report["rows"] == [] and report["settings"]["mask_field"] is None
    assert any("no ground truth" in note for note in report["settings"]["notes"])
    assert np.load(tmp_path / "out" / "maps.npz")["maps"].shape == (4, 8, 8)
    assert (tmp_path / "out" / "segment_img_0.png").is_file()
    assert "no ground truth" in (tmp_path / "out" / "segment.md").read_text()


def test_toy_errors_name_the_flag(tmp_path):
    with pytest.raises(EvalInputError, match="--method kmeans"):
        run_toy(tmp_path, method="mixture", objectives={})
    with pytest.raises(EvalInputError, match="--mask-field 'seg'"):
        run_toy(tmp_path, mask_field="seg")
    with pytest.raises(EvalInputError, match="--field 'img'"):
        run_toy(tmp_path, samples=[{"__key__": "x", "other": torch.zeros(3, 8, 8, dtype=torch.uint8)}],
                method="pixels")  # fmt: skip
    with pytest.raises(EvalInputError, match="--k 4"):
        run_toy(tmp_path, k=4)
    with pytest.raises(EvalInputError, match="give CKPT"):
        run_toy(tmp_path, method="kmeans", weights="random")
    with pytest.raises(EvalInputError, match="--local-map 'r5'"):
        run_toy(tmp_path, local_map="r5")
    with pytest.raises(EvalInputError, match="--objective"):
        run_toy(tmp_path, objectives={"a": ChannelMixture(), "b": ChannelMixture()})
    with pytest.raises(EvalInputError, match="drop --baseline"):
        run_toy(tmp_path, baseline="raw")
    with pytest.raises(OptionError, match="k"):
        get_evaluation("segment").options(k=1)


# ------------------------------------------------------------------------------------------ scenes, CLI

MIXTURE_RECIPE = {
    "name": "tiny_segment",
    "data": {"split": "train", "keep": ["label"]},
    "views": {"name": "cameras", "n_views": 2, "mode": "random",
              "augment": {"name": "amdim", "size": 32, "scale": [0.6, 1.0], "eval_crop_fraction": 1.0}},
    "encoders": {"image": {"kind": "amdim", "model_name": "amdim_small", "in_chans": 3, "n_rkhs": 16,
                           "trunk_kwargs": {"ndf": 8, "embed_dim": 16, "n_depth": 0}}},
    "objectives": [{"name": "amdim_mixture", "views": ["view0", "view1"], "feature_dim": 16, "n_components": 3}],
    "optimizer": {"name": "adam", "lr": 1.0e-3},
    "schedule": {"name": "cosine", "warmup_steps": 1},
    "train": {"batch_size": 8, "steps": 2, "seed": 3, "threads": 1},
    "checkpoint": {"every": 0, "keep": 1},
    "log": {"every": 1, "progress": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory):
    """Tiny scenes shards with masks (32 px, 2 cameras) and a 2-step amdim_mixture checkpoint trained on them;
    also the model's weights before training."""
    from multiview.builders import scenes
    from multiview.train.loop import Trainer
    from multiview.train.recipe import validate_recipe

    root = tmp_path_factory.mktemp("segment")
    config = scenes.ScenesConfig(n_cameras=2, size=32, masks=True)
    scenes.build(root / "shards", n_train=16, n_test=6, config=config, batch_size=16)
    recipe = json.loads(json.dumps(MIXTURE_RECIPE))
    recipe["data"]["path"], recipe["log"]["dir"] = str(root / "shards"), str(root / "runs")
    trainer = Trainer(validate_recipe(recipe))
    initial = {k: v.clone() for k, v in trainer.core.encoders.state_dict().items()}
    summary = trainer.fit()
    return {"shards": root / "shards", "run": summary.run_dir, "initial": initial, "root": root}


def cli(*args: str) -> int:
    return main(["eval", "segment", *args, "--quiet"])


def report_of(out) -> dict:
    return json.loads((out / "segment.json").read_text())


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "segment", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: multiview eval segment" in text
    for flag in ("--field", "--mask-field", "--method", "--k", "--local-map", "--weights", "--xy-weight", "--limit"):
        assert flag in text


def test_cli_pixels_on_scenes_needs_no_checkpoint(scenes_run):
    out = scenes_run["root"] / "pixels"
    assert cli("--data", str(scenes_run["shards"]), "--field", "cam0", "--method", "pixels", "--k", "3", "--out",
               str(out)) == 0  # fmt: skip
    report = report_of(out)
    assert report["checkpoint"] is None and report["settings"]["mask_field"] == "cam0_mask"
    values = {(r["level"], r["metric"]): r["value"] for r in report["rows"]}
    assert values[("image", "fg_iou")] > 0.3 and "dataset" not in {r["level"] for r in report["rows"]}
    maps = np.load(out / "maps.npz")
    assert maps["maps"].shape == (6, 32, 32) and len(maps["keys"]) == 6
    assert sorted(p.name for p in out.glob("*.png")) == ["segment_cam0_0.png"]  # 6 images: one grid of 8


def test_cli_kmeans_on_the_untrained_encoder_reads_the_runs_initial_weights(scenes_run):
    from multiview.eval.load import load_for_eval

    random = load_for_eval(scenes_run["run"], weights="random")
    trained = load_for_eval(scenes_run["run"])
    initial, state = scenes_run["initial"], random.encoders["cam0"].state_dict()
    assert all(torch.equal(state[k], initial[f"image.{k}"]) for k in state)  # the run's weights before step 1
    assert not all(torch.equal(v, trained.encoders["cam0"].state_dict()[k]) for k, v in state.items())
    out = scenes_run["root"] / "random"
    assert cli(str(scenes_run["run"]), "--data", str(scenes_run["shards"]), "--field", "cam1", "--method", "kmeans",
               "--weights", "random", "--out", str(out), "--no-plots") == 0  # fmt: skip
    report = report_of(out)
    assert report["settings"]["weights"] == "random" and report["settings"]["k"] == 3  # the mixture's k
    assert {r["method"] for r in report["rows"]} == {"kmeans-random"}
    assert {r["level"] for r in report["rows"]} == {"image", "dataset"}
    assert report["settings"]["share_of_pixels_seen"] == 1.0  # eval_crop_fraction 1: the whole image


def test_cli_mixture_on_the_trained_checkpoint(scenes_run):
    out = scenes_run["root"] / "mixture"
    assert cli(str(scenes_run["run"]), "--data", str(scenes_run["shards"]), "--field", "cam0", "--out", str(out),
               "--grids", "1", "--grid-images", "3") == 0  # fmt: skip
    report = report_of(out)
    assert report["settings"]["method"] == "mixture" and report["settings"]["objective"] == "amdim_mixture"
    assert report["settings"]["local_map"] == "r7" and report["settings"]["local_map_size"] == [7, 7]
    maps = np.load(out / "maps.npz")["maps"]
    assert maps.shape == (6, 32, 32) and set(np.unique(maps)) <= {0, 1, 2}
    assert (out / "segment_cam0_0.png").is_file() and "segment_cam0_0.png" in (out / "segment.md").read_text()


def test_cli_errors_name_the_field(scenes_run, capsys):
    data = ["--data", str(scenes_run["shards"]), "--method", "pixels", "--no-plots"]
    assert cli(*data, "--field", "cam7", "--out", str(scenes_run["root"] / "e1")) == 2
    assert "--field 'cam7'" in capsys.readouterr().err
    assert cli(*data, "--field", "cam0", "--mask-field", "cam0_seg", "--out", str(scenes_run["root"] / "e2")) == 2
    err = capsys.readouterr().err
    assert "--mask-field 'cam0_seg'" in err and "cam0_mask" in err  # names the mask fields there are
    assert cli(*data, "--out", str(scenes_run["root"] / "e3")) == 2
    assert "--field FIELD" in capsys.readouterr().err
