"""ShardStream: rank x worker split, determinism, epochs, resume, equal batch counts, map_fn, collate."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multiview.data import ShardStream, collate, epoch_plan, make_loader

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def keys_of(batches):
    return [list(b["__key__"]) for b in batches]


def run(root, workers=0, fields=("image", "label"), **kwargs):
    stream = ShardStream(root, "train", fields=list(fields), batch_size=kwargs.pop("batch_size", 4), **kwargs)
    return stream, list(make_loader(stream, num_workers=workers))


def test_two_ranks_two_workers_see_every_sample_exactly_once(toy):
    root = toy(n=37, maxcount=10)  # shards of 10, 10, 10, 7
    real, pads, per_rank = Counter(), 0, []
    for rank in (0, 1):
        _, batches = run(root, workers=2, rank=rank, world_size=2, seed=3)
        per_rank.append(len(batches))
        for b in batches:
            assert b["image"].shape == (4, 3, 6, 5) and b["image"].dtype == torch.uint8
            for key, pad in zip(b["__key__"], b["__pad__"].tolist()):
                pads += pad
                real[key] += not pad
    assert per_rank == [5, 5]  # ceil(37 / (2 ranks x 4)) batches on every rank
    assert set(real) == {f"s{i:03d}" for i in range(37)} and set(real.values()) == {1}
    assert pads == 2 * 5 * 4 - 37


def test_drop_tail_gives_equal_full_batches_without_repeats(toy):
    root = toy(n=37, maxcount=10)
    seen = []
    for rank in (0, 1):
        stream, batches = run(root, rank=rank, world_size=2, tail="drop")
        assert len(batches) == len(stream) == 4
        seen += [k for b in batches for k in b["__key__"]]
        assert not any(b["__pad__"].any() for b in batches)
    assert len(seen) == len(set(seen)) == 32


def test_batches_do_not_depend_on_the_number_of_workers(toy):
    root = toy(n=30, maxcount=7)
    _, zero = run(root, workers=0, seed=1)
    _, two = run(root, workers=2, seed=1)
    assert keys_of(zero) == keys_of(two)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(zero, two))


def test_same_seed_same_stream_other_seed_or_epoch_other_order(toy):
    root = toy(n=30, maxcount=7)
    a = keys_of(run(root, seed=5)[1])
    assert a == keys_of(run(root, seed=5)[1])
    assert a != keys_of(run(root, seed=6)[1])
    stream, _ = run(root, seed=5)
    stream.set_epoch(1)
    epoch1 = keys_of(list(make_loader(stream)))
    real = sorted(k for b in list(make_loader(stream)) for k, p in zip(b["__key__"], b["__pad__"]) if not p)
    assert epoch1 != a and real == [f"s{i:03d}" for i in range(30)]
    unshuffled = keys_of(run(root, shuffle=False)[1])
    assert sum(unshuffled, [])[:8] == [f"s{i:03d}" for i in range(8)]


def test_resume_from_state_dict_gives_the_identical_remainder(toy):
    root = toy(n=37, maxcount=10)
    stream, _ = run(root, seed=2)
    stream.set_epoch(3)
    full = keys_of(list(make_loader(stream, num_workers=2)))
    interrupted = ShardStream(root, "train", fields=["image", "label"], batch_size=4, seed=2)
    interrupted.set_epoch(3)
    for i, _ in enumerate(make_loader(interrupted, num_workers=2)):
        if i == 2:
            break
    state = interrupted.state_dict()
    assert state == {"epoch": 3, "batches": 3}
    resumed = ShardStream(root, "train", fields=["image", "label"], batch_size=4, seed=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the loop re-selecting the epoch it resumes keeps the position
    rest = keys_of(list(make_loader(resumed, num_workers=2)))
    assert rest == full[3:] and resumed.state_dict() == {"epoch": 3, "batches": len(full)}
    resumed.set_epoch(4)
    assert resumed.state_dict() == {"epoch": 4, "batches": 0} and len(list(make_loader(resumed))) == len(full)


def test_resampled_is_deterministic_with_a_fixed_epoch_size(toy):
    root = toy(n=23, maxcount=5)
    kw = {"resampled": True, "epoch_size": 40, "seed": 9, "tail": "drop"}
    ranks = [run(root, workers=w, rank=r, world_size=2, **kw)[1] for r, w in ((0, 2), (1, 0))]
    assert [len(b) for b in ranks] == [5, 5]  # 40 / (2 x 4)
    again = run(root, workers=0, rank=0, world_size=2, **kw)[1]
    assert keys_of(again) == keys_of(ranks[0])
    drawn = Counter(k for b in ranks for batch in keys_of(b) for k in batch)
    assert sum(drawn.values()) == 40 and max(drawn.values()) >= 1
    plan_a, _ = epoch_plan([5, 5, 5, 5, 3], seed=9, epoch=0, shuffle=True, resampled=True, epoch_size=40,
                           batch=4, world_size=2, tail="drop")  # fmt: skip
    plan_b, _ = epoch_plan([5, 5, 5, 5, 3], seed=9, epoch=1, shuffle=True, resampled=True, epoch_size=40,
                           batch=4, world_size=2, tail="drop")  # fmt: skip
    assert len(plan_a) == 40 and not np.array_equal(plan_a, plan_b)


def test_map_fn_gets_a_per_key_epoch_generator_and_kept_fields_survive(toy):
    root = toy(n=12, maxcount=5)

    def views(sample, generator):
        noise = torch.rand(1, generator=generator)
        return {"view0": sample["image"].float() + noise, "noise": noise}

    def noises(epoch, workers):
        stream = ShardStream(root, "train", fields=["image", "label"], map_fn=views, batch_size=3, seed=0)
        stream.set_epoch(epoch)
        out = {}
        for b in make_loader(stream, num_workers=workers):
            assert set(b) == {"view0", "noise", "__key__", "label", "__pad__", "__index__"}
            assert b["view0"].shape == (3, 3, 6, 5) and b["label"].dtype == torch.int64
            out.update(zip(b["__key__"], b["noise"][:, 0].tolist()))
        return out

    e0 = noises(0, workers=2)
    assert e0 == noises(0, workers=0)  # the same views in any process
    e1 = noises(1, workers=0)
    assert e0.keys() == e1.keys() and all(e0[k] != e1[k] for k in e0)


def test_unbatched_stream_yields_samples(toy):
    root = toy(n=7, maxcount=5)
    stream = ShardStream(root, "train", fields=["acc"], rank=1, world_size=2, shuffle=False)
    items = list(stream)
    assert len(items) == len(stream) == 4 and items[-1]["__pad__"] is True
    assert [s["__key__"] for s in items[:3]] == ["s001", "s003", "s005"] and items[0]["acc"].shape == (3, 7)


def test_rank_defaults_come_from_the_environment(toy, monkeypatch):
    root = toy(n=10, maxcount=5)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    stream = ShardStream(root, "train", fields=["label"], batch_size=5, shuffle=False)
    assert len(stream) == 1 and next(iter(stream))["__key__"] == [f"s{i:03d}" for i in (5, 6, 7, 8, 9)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tail": "wrap"}, r"tail is 'wrap'; expected one of \('drop', 'pad'\)"),
        ({"on_error": "ignore"}, r"on_error is 'ignore'"),
        ({"batch_size": 0}, r"batch_size must be >= 1 or None; got 0"),
        ({"seed": -1}, r"seed must be a non-negative int; got -1"),
        ({"epoch_size": 10}, r"epoch_size=10 needs resampled=True"),
        ({"rank": 2, "world_size": 2}, r"rank must be in \[0, world_size\).*got rank=2, world_size=2"),
    ],
)
def test_bad_arguments_name_the_value(toy, kwargs, message):
    root = toy(n=5, maxcount=5)
    with pytest.raises(ValueError, match=message):
        stream = ShardStream(root, "train", **kwargs)
        len(stream)


def test_too_few_samples_for_a_step_with_drop(toy):
    stream = ShardStream(toy(n=5, maxcount=5), "train", batch_size=4, world_size=2, rank=0, tail="drop")
    with pytest.raises(ValueError, match=r"5 samples make no full step of world_size x batch_size = 8"):
        list(stream)


def test_collate_stacks_tensors_and_keeps_lists():
    batch = collate([{"x": torch.zeros(2), "k": "a", "m": {"i": 1}, "y": 1, "f": 0.5, "p": True}] * 3)
    assert batch["x"].shape == (3, 2) and batch["k"] == ["a"] * 3 and batch["m"] == [{"i": 1}] * 3
    assert batch["y"].dtype == torch.int64 and batch["f"].dtype == torch.float32 and batch["p"].dtype == torch.bool
    with pytest.raises(ValueError, match=r"batch key 'x': tensors of different shapes \[\(2,\), \(3,\)\]"):
        collate([{"x": torch.zeros(2)}, {"x": torch.zeros(3)}])


def test_map_fn_generator_is_the_views_contract_generator():
    import multiview.views as views
    from multiview.data.stream import sample_generator

    a = torch.rand(3, generator=sample_generator(4, 2, "s001"))
    assert torch.equal(a, torch.rand(3, generator=views.derive_generator(4, 2, "s001")))
    assert not torch.equal(a, torch.rand(3, generator=sample_generator(4, 3, "s001")))


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 9), min_size=1, max_size=6).filter(lambda c: sum(c) > 0),
    world=st.integers(1, 4),
    batch=st.integers(1, 5),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_plan_covers_every_sample_once_with_pad_and_never_repeats_with_drop(counts, world, batch, shuffle, seed):
    kw = {"seed": seed, "epoch": 0, "shuffle": shuffle, "resampled": False, "epoch_size": None}
    order, is_pad = epoch_plan(counts, batch=batch, world_size=world, tail="pad", **kw)
    assert len(order) % (world * batch) == 0 and len(order) - sum(counts) < world * batch
    assert sorted(order[~is_pad].tolist()) == list(range(sum(counts))) and not is_pad[: sum(counts)].any()
    if sum(counts) >= world * batch:
        dropped, pads = epoch_plan(counts, batch=batch, world_size=world, tail="drop", **kw)
        assert len(dropped) == sum(counts) // (world * batch) * world * batch and not pads.any()
        assert len(set(dropped.tolist())) == len(dropped)


def test_cache_reads_each_sample_once_and_changes_nothing(toy, monkeypatch):
    root = toy(n=20, maxcount=7)
    plain = ShardStream(root, "train", batch_size=4, seed=2)
    cached = ShardStream(root, "train", batch_size=4, seed=2, cache=True)
    reads = Counter()
    original = cached.reader.read

    def counting(shard, j):
        reads[(shard, j)] += 1
        return original(shard, j)

    monkeypatch.setattr(cached.reader, "read", counting)
    for epoch in range(3):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        a, b = list(make_loader(plain)), list(make_loader(cached))
        assert keys_of(a) == keys_of(b)
        assert all(torch.equal(x["acc"], y["acc"]) and torch.equal(x["image"], y["image"]) for x, y in zip(a, b))
    assert len(reads) == 20 and set(reads.values()) == {1}


def test_fast_npy_decode_matches_numpy():
    import io

    from multiview.data.fields import _fast_npy, decode_npy

    arrays = [
        np.arange(5, dtype=np.float32),
        np.zeros((3, 4), np.int16),
        np.array(3.0),
        np.ones((2, 3, 4), ">f8"),
        np.zeros((0, 3), np.uint8),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    ]
    for arr in arrays:
        buf = io.BytesIO()
        np.save(buf, arr)
        decoded = decode_npy(buf.getvalue())
        assert decoded.shape == arr.shape and np.array_equal(decoded.numpy(), arr)
        assert (_fast_npy(buf.getvalue()) is None) == bool(arr.ndim > 1 and np.isfortran(arr))


def test_items_carry_their_index_in_the_split(toy):
    root = toy(n=23, maxcount=7)
    stream = ShardStream(root, "train", batch_size=5, seed=4, tail="pad")
    seen = {}
    for batch in make_loader(stream):
        for key, index, pad in zip(batch["__key__"], batch["__index__"].tolist(), batch["__pad__"].tolist()):
            if not pad:
                seen[key] = index
    assert sorted(seen.values()) == list(range(23))
    assert all(seen[f"s{i:03d}"] == i for i in range(23))  # write order: shard 0 holds 0..6, shard 1 7..13, ...
