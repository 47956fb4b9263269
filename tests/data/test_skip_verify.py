"""Issue 14 item 3: skip mode skips what training would trip on, and verify sees it first.

A sample missing a field, a field whose shape or dtype breaks the manifest, a non-finite float and a split total
that disagrees with its shards: each is a ShardError naming shard, key and field (skipped and counted with
``on_error="skip"``) in both readers, and a problem in ``verify``.
"""

from __future__ import annotations

import io
import json
import logging
import re

import numpy as np
import pytest

from multiview.data import ShardError, ShardStream, iter_samples, make_loader
from multiview.data.verify import verify
from multiview.data.webstream import WebStream

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def drop_member(name):
    return lambda members: [m for m in members if m[0] != name]


def replace_member(name, data):
    return lambda members: [(n, data if n == name else blob) for n, blob in members]


def keys_of(batches):
    return sorted(k for b in batches for k, pad in zip(b["__key__"], b["__pad__"]) if not pad)


class Views:
    """A map_fn as a recipe's views are: it reads ``acc`` and fails on a sample without it."""

    def __call__(self, sample, generator):
        if "acc" not in sample:
            raise ValueError(f"sample {sample['__key__']!r} has no field 'acc'")
        return {"view": sample["acc"].float().flatten()[:4]}


def streams(root, **kwargs):
    """The indexed reader and the streamed one (with the manifest) over the same folder."""
    return [ShardStream(root, "train", **kwargs), WebStream(root, "train", **kwargs)]


# ---------------------------------------------------------------------------------------- missing fields
@pytest.mark.parametrize("reader", ["indexed", "stream"])
def test_a_sample_missing_a_field_is_skipped_without_data_fields(toy, tamper, reader):
    root = toy(n=8, maxcount=4)
    tamper(root, "train-000000.tar", drop_member("s002.acc.npy"))
    kwargs = dict(batch_size=4, shuffle=False, tail="pad", map_fn=Views())
    make = ShardStream if reader == "indexed" else WebStream
    stream = make(root, "train", on_error="skip", **kwargs)
    batches = list(make_loader(stream))
    assert stream.skipped == 1 and "s002" not in keys_of(batches)
    assert keys_of(batches) == [f"s{i:03d}" for i in range(8) if i != 2]
    with pytest.raises(ShardError, match=r"train-000000.tar, key 's002', field 'acc.npy': missing field"):
        list(make_loader(make(root, "train", **kwargs)))


@pytest.mark.parametrize("reader", ["indexed", "stream"])
def test_a_sample_missing_a_field_without_map_fn_does_not_crash_collate(toy, tamper, reader):
    root = toy(n=8, maxcount=4)
    tamper(root, "train-000000.tar", drop_member("s000.meta.json"))  # the first sample of the batch
    make = ShardStream if reader == "indexed" else WebStream
    stream = make(root, "train", batch_size=4, shuffle=False, on_error="skip")
    batches = list(make_loader(stream))
    assert "s000" not in keys_of(batches) and all(len(b["meta"]) == 4 for b in batches)
    assert stream.skipped == 1 if reader == "indexed" else stream.skipped >= 1  # a stream's repeats may meet it again


def test_iter_samples_skips_a_sample_missing_a_field(toy, tamper):
    root = toy(n=6, maxcount=4)
    tamper(root, "train-000001.tar", drop_member("s005.label.cls"))
    for mode in ("indexed", "stream"):
        keys = [s["__key__"] for s in iter_samples(root, "train", on_error="skip", mode=mode)]
        assert keys == ["s000", "s001", "s002", "s003", "s004"], mode
        with pytest.raises(ShardError, match=r"train-000001.tar, key 's005', field 'label.cls': missing field"):
            list(iter_samples(root, "train", mode=mode))


def test_streamed_without_manifest_skips_a_sample_map_fn_cannot_map(toy, tamper):
    root = toy(n=8, maxcount=4)
    tamper(root, "train-000001.tar", drop_member("s005.acc.npy"))
    (root / "manifest.json").unlink()
    kwargs = dict(batch_size=4, shuffle=False, map_fn=Views(), keep=["__key__", "label"])
    stream = WebStream(root, "train", on_error="skip", **kwargs)
    batches = list(make_loader(stream))
    assert stream.skipped == 1 and keys_of(batches) == [f"s{i:03d}" for i in range(8) if i != 5]
    with pytest.raises(ShardError, match=r"train-000001.tar, key 's005', field 'acc': missing field"):
        list(make_loader(WebStream(root, "train", **kwargs)))


def test_a_sample_missing_a_kept_field_is_skipped(toy, tamper):
    root = toy(n=8, maxcount=4)
    tamper(root, "train-000000.tar", drop_member("s001.label.cls"))
    (root / "manifest.json").unlink()  # no manifest: only keep says the label is needed
    stream = WebStream(root, "train", batch_size=4, shuffle=False, map_fn=Views(), keep=["__key__", "label"],
                       on_error="skip")  # fmt: skip
    batches = list(make_loader(stream))
    assert stream.skipped == 1 and keys_of(batches) == [f"s{i:03d}" for i in range(8) if i != 1]
    assert all(b["label"].shape == (4,) for b in batches)


def test_skip_mode_gives_up_when_no_sample_is_good(toy, monkeypatch):
    import multiview.data.webstream as webstream

    monkeypatch.setattr(webstream, "_GIVE_UP", 20)
    root = toy(n=8, maxcount=4)
    (root / "manifest.json").unlink()  # no counts: epoch_size fixes a quota the shards are cycled to fill
    stream = WebStream(root, "train", batch_size=4, map_fn=Views(), keep=["__key__", "labl"], on_error="skip",
                       epoch_size=16, shuffle_buffer=1)  # fmt: skip
    with pytest.raises(ShardError, match=r"20 samples in a row failed \(see the log\); giving up"):
        list(make_loader(stream))


# ------------------------------------------------------------------------------------- shapes and dtypes
def test_a_shape_that_breaks_the_manifest_is_a_shard_error(toy, tamper, caplog):
    root = toy(n=8, maxcount=4)  # acc.npy is float32 [3, 7]
    tamper(root, "train-000001.tar", replace_member("s006.acc.npy", npy(np.zeros((3, 8), np.float32))))
    cause = r"train-000001.tar, key 's006', field 'acc.npy': shape \[3, 8\]; the manifest says \[3, 7\]"
    for stream in streams(root, batch_size=4, shuffle=False):
        with pytest.raises(ShardError, match=cause):
            list(make_loader(stream))
    for stream in streams(root, batch_size=4, shuffle=False, on_error="skip"):
        with caplog.at_level(logging.WARNING, logger="multiview.data"):
            batches = list(make_loader(stream))
        assert stream.skipped == 1 and "s006" not in keys_of(batches)
    with pytest.raises(ShardError, match=cause):
        list(iter_samples(root, "train"))
    problems = [str(p) for p in verify(root).problems]
    assert len(problems) == 1 and "key 's006', field 'acc.npy': shape [3, 8]; the manifest says [3, 7]" in problems[0]


def test_a_dtype_that_breaks_the_manifest_is_a_shard_error(toy, tamper):
    root = toy(n=4, maxcount=4)
    tamper(root, "train-000000.tar", replace_member("s003.acc.npy", npy(np.zeros((3, 7), np.float64))))
    with pytest.raises(ShardError, match=r"key 's003', field 'acc.npy': dtype float64; the manifest says float32"):
        list(iter_samples(root, "train"))
    assert "dtype float64; the manifest says float32" in str(verify(root).problems[0])


def test_a_null_dim_is_not_checked(tmp_path):
    from multiview.data import write_dataset

    samples = [{"__key__": f"k{i}", "x.npy": np.zeros((2, 3 + i), np.float32)} for i in range(4)]
    write_dataset(tmp_path / "d", {"train": samples})
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["fields"]["x.npy"]["shape"] == [2, None]
    assert [tuple(s["x"].shape) for s in iter_samples(tmp_path / "d", "train")] == [(2, 3), (2, 4), (2, 5), (2, 6)]
    assert verify(tmp_path / "d").ok


def test_collate_names_keys_and_shards_without_a_manifest(toy, tamper):
    root = toy(n=8, maxcount=4)
    tamper(root, "train-000001.tar", replace_member("s006.acc.npy", npy(np.zeros((3, 8), np.float32))))
    (root / "manifest.json").unlink()
    stream = WebStream(root, "train", batch_size=4, shuffle=False, fields=["acc"])
    with pytest.raises(ValueError, match=r"batch key 'acc': tensors of different shapes") as err:
        list(make_loader(stream))
    text = str(err.value)
    assert re.search(r"\[3, 8\]: key 's006' of \S*train-000001.tar", text), text
    assert re.search(r"\[3, 7\]: keys 's004', 's005', 's007' of \S*train-000001.tar", text), text


# -------------------------------------------------------------------------------------------- non-finite
def test_a_non_finite_float_is_a_shard_error_and_a_verify_problem(toy, tamper):
    root = toy(n=8, maxcount=4)
    bad = np.zeros((3, 7), np.float32)
    bad[1, 2] = np.inf
    tamper(root, "train-000000.tar", replace_member("s002.acc.npy", npy(bad)))
    cause = r"train-000000.tar, key 's002', field 'acc.npy': non-finite values \(1 inf, 0 NaN of 21\)"
    for mode in ("indexed", "stream"):
        with pytest.raises(ShardError, match=cause):
            list(iter_samples(root, "train", mode=mode))
    for stream in streams(root, batch_size=4, shuffle=False, on_error="skip"):
        assert "s002" not in keys_of(list(make_loader(stream))) and stream.skipped == 1
    (problem,) = verify(root).problems
    assert "key 's002', field 'acc.npy': non-finite values (1 inf, 0 NaN of 21)" in str(problem)
    (root / "manifest.json").unlink()
    (problem,) = verify(root).problems
    assert "key 's002', field 'acc.npy': non-finite values" in str(problem)


# ------------------------------------------------------------------------------------------- split totals
def test_verify_flags_a_split_total_that_disagrees_with_its_shards(toy):
    root = toy(n=8, maxcount=4)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["train"]["count"] = 9
    (root / "manifest.json").write_text(json.dumps(manifest))
    (problem,) = verify(root).problems
    assert "split 'train' count is 9; its shards' counts sum to 8" in str(problem)
    (problem,) = verify(str(root), ["train"]).problems  # the same via a spec string
    assert "sum to 8" in str(problem)
