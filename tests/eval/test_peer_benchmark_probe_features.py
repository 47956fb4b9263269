"""The peer benchmark's probe features: one trunk pass gives every set, in the documented shapes and columns."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peer_fashion_mnist.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("peer_fashion_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up by name
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_probe_features_slices_match_each_set_and_global_matches_the_encoder():
    bench = load_benchmark()
    torch.manual_seed(0)
    encoder = bench.make_encoder(argparse.Namespace(ndf=4, embed_dim=24, n_depth=1, n_rkhs=16)).eval()
    features = bench.ProbeFeatures(encoder, ["maps", "global", "maps7", "trunk"])
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        out = features(x).global_
        r7, r5, r1 = encoder.trunk.forward_intermediates(x, intermediates_only=True)
        expected_global = encoder(x).global_
    c7, c5 = r7.shape[1], r5.shape[1]  # 16 channels each at ndf 4
    dims = {name: s.stop - s.start for name, s in features.slices.items()}
    assert dims == {"maps": 9 * c7 + 4 * c5 + 24, "global": 16, "maps7": 49 * c7 + 4 * c5 + 24, "trunk": 24}
    assert out.shape == (3, sum(dims.values()))
    torch.testing.assert_close(out[:, features.slices["global"]], expected_global)
    torch.testing.assert_close(out[:, features.slices["trunk"]], r1.flatten(1))
    maps7 = out[:, features.slices["maps7"]]
    torch.testing.assert_close(maps7[:, : 49 * c7], r7.flatten(1))  # r7 whole, in channel-major order
    maps = out[:, features.slices["maps"]]
    torch.testing.assert_close(maps[:, : c7 * 9].reshape(3, c7, 3, 3)[..., 1, 1], r7[..., 2:5, 2:5].mean((2, 3)))


def test_bad_arguments_are_refused_before_any_work_with_the_flag_named(capsys):
    bench = load_benchmark()
    for argv, flag in (
        (["--jobs", "0"], "--jobs: expected >= 1, got 0"),
        (["--methods", "cmc,byol"], "--methods: unknown ['byol']"),
        (["--probe-features", "maps,maps"], "--probe-features: got ['maps', 'maps']"),
    ):
        with pytest.raises(SystemExit) as exit_:
            bench.main(argv)
        assert exit_.value.code == 2
        assert flag in capsys.readouterr().err


def test_bad_seed_and_transform_flags_are_refused_with_the_flag_named(capsys):
    bench = load_benchmark()
    for argv, flag in (
        (["--seeds", "0,x"], "--seeds: expected a comma list of integers"),
        (["--seeds", "1,1"], "--seeds: expected distinct integers"),
        (["--simclr-blur", "1.5"], "--simclr-blur: expected a value in [0, 1], got 1.5"),
        (["--view-min-scale", "-0.1"], "--view-min-scale: expected a value in [0, 1]"),
    ):
        with pytest.raises(SystemExit) as exit_:
            bench.main(argv)
        assert exit_.value.code == 2
        assert flag in capsys.readouterr().err


def _seeds(rows):
    """{seed: {method: {"linear_top1": top1}}} from {method: [top1 per seed]}."""
    n = len(next(iter(rows.values())))
    return {s: {m: {"linear_top1": v[s]} for m, v in rows.items()} for s in range(n)}


def test_over_seeds_gives_mean_standard_error_and_gain_over_the_untrained_encoder_of_the_same_seed():
    bench = load_benchmark()
    per_seed = _seeds({"random_init": [0.80, 0.82, 0.84], "amdim": [0.90, 0.91, 0.95]})
    out = bench.over_seeds(per_seed, ["maps7"])
    assert out["amdim"]["top1"] == {"mean": 0.92, "se": pytest.approx(0.0153, abs=1e-4), "n": 3}
    # gains 0.10, 0.09, 0.11: mean 0.10, SE 0.01/sqrt(3)
    assert out["amdim"]["gain_over_untrained"]["mean"] == pytest.approx(0.10)
    assert out["amdim"]["gain_over_untrained"]["se"] == pytest.approx(0.0058, abs=1e-4)
    assert "gain_over_untrained" not in out["random_init"]


def test_verdict_calls_a_margin_inside_two_standard_errors_a_tie_and_one_seed_undetermined():
    bench = load_benchmark()
    # margins +0.0015, +0.0065, +0.0030 (the old README's three seeds): mean 0.0037, SE 0.0015 -> outside 2 SE
    clear = bench.verdict(
        _seeds({"amdim": [0.9001, 0.9045, 0.8991], "simclr_lightly": [0.8986, 0.8980, 0.8961]}), "maps7"
    )
    assert clear["best_ours"] == "amdim" and clear["call"] == "ours above lightly"
    tie = bench.verdict(_seeds({"amdim": [0.900, 0.890, 0.905], "simclr_lightly": [0.895, 0.899, 0.896]}), "maps7")
    assert abs(tie["margin_mean"]) <= 2 * tie["margin_se"] and tie["call"] == "tie"
    behind = bench.verdict(_seeds({"cmc": [0.880, 0.881, 0.879], "simclr_lightly": [0.898, 0.897, 0.899]}), "maps7")
    assert behind["call"] == "lightly above ours"
    one = bench.verdict(_seeds({"amdim": [0.95], "simclr_lightly": [0.80]}), "maps7")
    assert one["margin_se"] is None and one["call"].startswith("undetermined")
    assert bench.verdict(_seeds({"amdim": [0.9]}), "maps7") is None  # no lightly row: nothing to call
