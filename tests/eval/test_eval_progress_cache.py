"""Evaluation progress and shared work (issue 16 item 2): each split read once per cache, the same numbers with
and without sharing, phase times in the report, bars only when asked and on a terminal."""

from __future__ import annotations

import io
import sys

import numpy as np
import torch

from multiview.eval.base import EvalContext, get_evaluation
from multiview.eval.cache import EvalCache
from multiview.eval.probes import DEFAULT_WEIGHT_DECAYS, linear_probe
from multiview.eval.progress import PhaseTimer, progress_bar
from tests.eval.test_eval_tasks_cli import SPLITS, bundle


class CountingSamples:
    """A ``samples_fn`` that counts the passes over each split."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}

    def __call__(self, split: str):
        self.reads[split] = self.reads.get(split, 0) + 1
        return iter(SPLITS[split])


def _run(name: str, ctx: EvalContext, **options) -> dict:
    evaluation = get_evaluation(name)
    return evaluation.run(ctx, evaluation.options(**options))


def _context(samples, out, cache: EvalCache | None = None, encoders=None) -> EvalContext:
    return EvalContext(bundle=encoders or bundle(), samples_fn=samples, out_dir=out, plots=False, progress=False,
                       **({"cache": cache} if cache is not None else {}))  # fmt: skip


def test_a_shared_cache_reads_each_split_once_and_changes_no_number(tmp_path):
    alone = CountingSamples()
    encoders = bundle()
    separate = [
        _run("retrieval", _context(alone, tmp_path / "r0", encoders=encoders), query="a", gallery="b"),
        _run("linear", _context(alone, tmp_path / "l0", encoders=encoders)),
    ]
    shared, cache = CountingSamples(), EvalCache()
    together = [
        _run("retrieval", _context(shared, tmp_path / "r1", cache, encoders), query="a", gallery="b"),
        _run("linear", _context(shared, tmp_path / "l1", cache, encoders)),
    ]
    assert [r["rows"] for r in together] == [r["rows"] for r in separate]
    # retrieval: test (learned + raw in one pass) and train (raw); the probe only adds learned train
    assert shared.reads == {"test": 1, "train": 2}
    assert alone.reads == {"test": 2, "train": 2}  # without sharing: each evaluation reads both splits
    assert cache.hits > 0


def test_the_cache_keys_on_probe_features(tmp_path):
    """A probe on other features than the global vector embeds again; the same features do not."""
    samples, cache = CountingSamples(), EvalCache()
    encoders = bundle()
    ctx = _context(samples, tmp_path / "a", cache, encoders)
    first = cache.learned(ctx, "test", ["a"])
    assert cache.learned(ctx, "test", ["a"])["a"] is first["a"] and samples.reads == {"test": 1}
    other = encoders.with_probe_features("global")
    cache.learned(ctx, "test", ["a"], bundle=other, features=("trunk",))
    assert samples.reads == {"test": 2}


def test_reports_carry_phase_seconds(tmp_path):
    report = _run("retrieval", _context(CountingSamples(), tmp_path / "r"), query="a", gallery="b")
    assert set(report["seconds"]) == {"embed", "fit", "score"}
    assert all(s >= 0 for s in report["seconds"].values())
    assert "- time: " in (tmp_path / "r" / "retrieval.md").read_text()
    probe = _run("linear", _context(CountingSamples(), tmp_path / "l"))
    assert set(probe["seconds"]) == {"embed", "fit"}


def test_linear_probe_counts_its_fits_without_changing_the_result():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    y = (x[:, 0] > 0).long()
    counted: list[int] = []
    res = linear_probe(x[:150], y[:150], x[150:], y[150:], progress=counted.append)
    assert sum(counted) == len(DEFAULT_WEIGHT_DECAYS) + 1
    assert res == linear_probe(x[:150], y[:150], x[150:], y[150:])


def test_bars_only_when_asked_and_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(range(3), desc="pipe").disable  # not a terminal: quiet
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress_bar(range(3), desc="quiet", enabled=False).disable
    with progress_bar(range(3), desc="shown") as bar:
        assert not bar.disable and list(bar) == [0, 1, 2]
    assert "shown" in sys.stderr.getvalue()


def test_phase_timer_adds_up_a_phase_entered_twice():
    timer = PhaseTimer()
    for _ in range(2):
        with timer.phase("fit"):
            np.zeros(10).sum()
    with timer.phase("plots"):
        pass
    assert list(timer.seconds) == ["fit", "plots"] and timer.line("linear").startswith("linear took ")


def test_cli_quiet_turns_the_bars_off():
    from multiview.eval.cli import _context

    parser_args = {
        "data": "d", "checkpoint": None, "split": "test", "train_split": "train", "allow_same_split": False,
        "baseline": "raw", "no_baseline": False, "label_field": "label", "batch_size": 8, "device": "cpu",
        "out": "o", "no_plots": True, "map_method": "pca", "rename": None, "quiet": True,
    }  # fmt: skip
    import argparse

    args = argparse.Namespace(**parser_args, eval_command="linear")
    assert _context(args, "linear").progress is False
    assert _context(argparse.Namespace(**{**parser_args, "quiet": False}), "linear").progress is True
