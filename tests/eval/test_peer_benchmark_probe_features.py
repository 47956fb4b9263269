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
