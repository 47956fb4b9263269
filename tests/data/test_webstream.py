"""WebStream: the epoch layout, determinism, exact resume at bounded cost, and every source kind it streams."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from conftest import foreign, make_uneven

from multiview.data import make_loader
from multiview.data.location import SourceError, resolve
from multiview.data.webstream import WebStream, plan_slots

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
FIELDS = ["image", "label"]


def keys_of(batches) -> list[list[str]]:
    return [list(b["__key__"]) for b in batches]


def stream_of(source, workers=0, **kwargs):
    kwargs.setdefault("batch_size", 4)
    stream = WebStream(source, "train", fields=FIELDS, **kwargs)
    return stream, make_loader(stream, num_workers=workers)


# ------------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("tail", ["drop", "pad"])
@pytest.mark.parametrize("world,workers", [(1, 1), (2, 2), (3, 1), (2, 3)])
def test_plan_gives_every_rank_the_same_batches_and_deals_each_shard_once(tail, world, workers):
    counts = [3, 9, 4, 12, 1, 7, 5]
    plan = plan_slots(7, counts, seed=1, epoch=2, shuffle=True, resampled=False, epoch_size=None, batch=2,
                      world_size=world, workers=workers, tail=tail)  # fmt: skip
    per_rank = [sum(slot.quota for slot in slots) for slots in plan]
    assert len(set(per_rank)) == 1
    dealt = sorted(s for slots in plan for slot in slots for s in slot.shards)
    assert dealt == list(range(7))
    cut = sum(max(0, s.samples - 2 * s.quota) for slots in plan for s in slots)
    pad = sum(max(0, 2 * s.quota - s.samples) for slots in plan for s in slots)
    if tail == "drop":
        assert pad == 0 and 41 - cut == per_rank[0] * world * 2  # cut to full batches, nothing repeated
    else:
        assert cut == 0 and 41 + pad == per_rank[0] * world * 2  # padded, nothing dropped


def test_plan_refuses_what_cannot_be_equal():
    with pytest.raises(ValueError, match="3 shard.* cannot feed 4 processes"):
        plan_slots(3, [5, 5, 5], seed=0, epoch=0, shuffle=True, resampled=False, epoch_size=None, batch=2,
                   world_size=4, workers=1, tail="drop")  # fmt: skip
    with pytest.raises(ValueError, match="needs the shards' sample counts.*shards index.*epoch_size"):
        plan_slots(8, None, seed=0, epoch=0, shuffle=True, resampled=False, epoch_size=None, batch=2,
                   world_size=2, workers=1, tail="drop")  # fmt: skip
    plan = plan_slots(8, None, seed=0, epoch=0, shuffle=True, resampled=False, epoch_size=40, batch=2,
                      world_size=2, workers=2, tail="drop")  # fmt: skip
    assert [[s.quota for s in slots] for slots in plan] == [[5, 5], [5, 5]]


# ---------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("workers", [0, 2])
def test_one_process_streams_every_sample_once(tmp_path, workers):
    root = foreign(make_uneven(tmp_path))
    stream, loader = stream_of(root, workers, tail="pad", shuffle_buffer=6)
    batches = list(loader)
    real = Counter(k for b in batches for k, p in zip(b["__key__"], b["__pad__"].tolist()) if not p)
    assert set(real) == {f"k{i:02d}" for i in range(41)} and set(real.values()) == {1}
    assert all(len(b["__key__"]) == 4 for b in batches)
    assert batches[0]["image"].shape == (4, 1, 4, 4) and batches[0]["label"].dtype.is_floating_point is False


def test_ranks_and_workers_get_equal_batches_and_disjoint_samples(tmp_path):
    root = make_uneven(tmp_path)  # manifest: counts known
    seen, lengths = [], []
    for rank in (0, 1):
        stream, loader = stream_of(root, 2, rank=rank, world_size=2, tail="drop", seed=4)
        batches = list(loader)
        lengths.append((len(batches), len(stream)))
        seen += [k for b in batches for k in b["__key__"]]
    assert lengths[0] == lengths[1] and lengths[0][0] == lengths[0][1]
    assert len(seen) == len(set(seen)) == lengths[0][0] * 2 * 4  # each-shard-once: nothing twice


def test_same_seed_same_stream_other_seed_or_epoch_other(tmp_path):
    root = foreign(make_uneven(tmp_path))
    a = keys_of(stream_of(root, seed=5)[1])
    assert a == keys_of(stream_of(root, seed=5)[1])
    assert a != keys_of(stream_of(root, seed=6)[1])
    stream, loader = stream_of(root, seed=5)
    stream.set_epoch(1)
    assert keys_of(loader) != a
    assert sorted(sum(keys_of(stream_of(root, shuffle=False)[1]), [])[:41]) == [f"k{i:02d}" for i in range(41)]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop", [1, 3, 6])
def test_resume_mid_epoch_yields_the_identical_rest_and_rereads_one_group(tmp_path, monkeypatch, workers, stop):
    import multiview.data.webstream as ws

    opened: list[str] = []
    real = ws.raw_samples
    monkeypatch.setattr(ws, "raw_samples", lambda url, opts=None: (opened.append(url), real(url, opts))[1])
    root = foreign(make_uneven(tmp_path))
    options = dict(seed=2, shuffle_buffer=8, tail="pad")
    stream, loader = stream_of(root, workers, **options)
    stream.set_epoch(3)
    full = list(loader)
    opens_full = len(opened)
    stream, loader = stream_of(root, workers, **options)
    stream.set_epoch(3)
    it = iter(loader)
    head = [next(it) for _ in range(stop)]
    state = stream.state_dict()
    del it
    opens_head = len(opened) - opens_full

    resumed, loader = stream_of(root, workers, **options)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # re-selecting the loaded epoch keeps the position
    rest = list(loader)
    assert keys_of(head + rest) == keys_of(full)
    for a, b in zip(head + rest, full):
        assert (a["image"] == b["image"]).all()
    # the resume re-reads at most one shuffle group per worker (8 samples: at most 3 of these shards), not the
    # shards before it: opens(resume) <= opens(full) - opens(head) + one group per worker
    reread = (len(opened) - opens_full - opens_head) - (opens_full - opens_head)
    assert reread <= 3 * max(1, workers)


def test_resume_with_another_worker_count_is_refused(tmp_path):
    root = foreign(make_uneven(tmp_path))
    stream, loader = stream_of(root, 2)
    it = iter(loader)
    next(it)
    state = stream.state_dict()
    del it
    other, loader = stream_of(root, 0)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="saved with 2 loader worker.*resumes with 1"):
        list(loader)


def test_resampled_stream_has_a_fixed_epoch_and_is_deterministic(tmp_path):
    root = foreign(make_uneven(tmp_path))
    stream, loader = stream_of(root, 2, resampled=True, epoch_size=48, rank=1, world_size=2, seed=7)
    batches = list(loader)
    assert len(batches) == len(stream) == 6 and not any(b["__pad__"].any() for b in batches)
    assert keys_of(batches) == keys_of(stream_of(root, 2, resampled=True, epoch_size=48, rank=1, world_size=2,
                                                 seed=7)[1])  # fmt: skip


def test_unknown_length_says_how_to_fix_it(tmp_path):
    stream, _ = stream_of(foreign(make_uneven(tmp_path)))
    with pytest.raises(TypeError, match="shards index.*epoch_size"):
        len(stream)


# ------------------------------------------------------------------------------------------------ sources
def test_sources_resolve_folders_globs_patterns_lists_and_url_files(tmp_path):
    root = foreign(make_uneven(tmp_path))
    tars = sorted(str(p) for p in root.glob("*.tar"))
    assert resolve(root).urls == tars
    assert resolve(f"{root}/train-00000[0-2].tar").urls == tars[:3]
    assert resolve(f"{root}/train-{{000000..000006}}.tar").urls == tars
    assert resolve(f"{root}/{{split}}-{{000004..000006}}.tar", "train").urls == tars[4:]
    assert resolve(tars[:2]).urls == tars[:2]
    (tmp_path / "urls.txt").write_text("# shards\n" + "\n".join(tars[:3]) + "\n\n")
    assert resolve(tmp_path / "urls.txt").urls == tars[:3]
    with pytest.raises(SourceError, match="no shards of split 'test'.*holds \\['train'\\]"):
        resolve(root, "test")
    with pytest.raises(SourceError, match="no such file or folder"):
        resolve(tmp_path / "nowhere")


def test_a_folder_with_a_manifest_is_indexed_unless_stream_is_asked(tmp_path):
    from multiview.data.location import choose_mode

    root = make_uneven(tmp_path)
    source = resolve(root)
    assert source.counts == [3, 9, 4, 12, 1, 7, 5] and choose_mode(source) == "indexed"
    assert choose_mode(source, "stream") == "stream"
    copy = shutil.copytree(root, tmp_path / "copy")
    with pytest.raises(SourceError, match="data.mode 'indexed' needs a local folder with manifest.json.*stream"):
        choose_mode(resolve(foreign(copy)), "indexed")
