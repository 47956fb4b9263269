"""Every corrupt input fails with a message naming the shard, the key, the field and the cause; skip mode counts."""

from __future__ import annotations

import logging

import pytest
from conftest import make_uneven  # tests/data is on sys.path (pytest prepend mode)

from multiview.data import ManifestError, ShardError, ShardStream, iter_samples, make_loader
from multiview.data.errors import ErrorPolicy
from multiview.data.webstream import WebStream

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def read_all(root, **kwargs):
    return list(iter_samples(root, "train", **kwargs))


def replace_member(suffix, data):
    """An edit for ``tamper``: replace the bytes of sample s001's ``suffix`` member."""

    def edit(members):
        return [(name, data if name == f"s001.{suffix}" else blob) for name, blob in members]

    return edit


def test_truncated_tar(toy):
    root = toy(n=12, maxcount=5)
    path = root / "train-000001.tar"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(
        ShardError, match=r"^train-000001.tar: truncated tar: .* runs past the end .*\(after 1 complete sample\(s\)\)"
    ):
        read_all(root)


def test_truncated_at_a_member_boundary_is_caught_by_the_manifest(toy):
    root = toy(n=12, maxcount=5)
    path = root / "train-000000.tar"
    path.write_bytes(path.read_bytes()[:512])  # the first header only, no data: the member runs past the end
    with pytest.raises(ShardError, match=r"^train-000000.tar: truncated tar"):
        read_all(root)
    path.write_bytes(b"")
    with pytest.raises(ShardError, match=r"^train-000000.tar: not a tar file"):
        read_all(root)


def test_not_a_tar(toy):
    root = toy(n=6, maxcount=5)
    (root / "train-000000.tar").write_bytes(b"this is not a tar archive at all" * 100)
    with pytest.raises(ShardError, match=r"^train-000000.tar: not a tar file \(.*\)"):
        read_all(root)


def test_missing_shard_file_and_missing_manifest(toy):
    root = toy(n=6, maxcount=5)
    (root / "train-000001.tar").unlink()
    with pytest.raises(ShardError, match=r"^train-000001.tar: file not found: .*train-000001.tar"):
        read_all(root)
    (root / "manifest.json").unlink()
    (root / ".multiview-writing").touch()  # what a write that crashed leaves behind
    with pytest.raises(ManifestError, match=r"manifest.json: no manifest \(shards without a manifest"):
        read_all(root)
    (root / ".multiview-writing").unlink()  # a folder of tars without a manifest is a foreign source: streamed
    assert [s["__key__"] for s in read_all(root)] == [f"s{i:03d}" for i in range(5)]


def test_corrupt_image_bytes(toy, tamper):
    root = toy(n=4, maxcount=5)
    tamper(root, "train-000000.tar", replace_member("image.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40))
    with pytest.raises(ShardError, match=r"^train-000000.tar, key 's001', field 'image.png': corrupt or unsupported"):
        read_all(root)
    assert len(read_all(root, fields=["label", "acc"])) == 4  # a field not asked for is not decoded


def test_bad_wav(toy, tamper):
    root = toy(n=4, maxcount=5)
    tamper(root, "train-000000.tar", replace_member("audio.wav", b"RIFX" + b"\0" * 60))
    with pytest.raises(ShardError, match=r"key 's001', field 'audio.wav': not a PCM WAV file \(64 bytes\)"):
        read_all(root)


def test_missing_field(toy, tamper):
    root = toy(n=4, maxcount=5)
    tamper(root, "train-000000.tar", lambda members: [m for m in members if m[0] != "s002.acc.npy"])
    with pytest.raises(ShardError, match=r"key 's002', field 'acc': missing field; the sample has \['audio.wav'"):
        read_all(root, fields=["acc"])
    with pytest.raises(ValueError, match=r"manifest.json: split 'train' has no field 'depth'; its fields are \['acc',"):
        read_all(root, fields=["depth"])


def test_pickles_are_refused(toy, tamper):
    root = toy(n=3, maxcount=5)
    tamper(root, "train-000000.tar", lambda members: [("s000.weights.pth", b"\x80\x04K\x01."), *members])
    with pytest.raises(ShardError, match=r"key 's000', field 'weights.pth': .pth is refused: pickled data is never"):
        read_all(root)


def test_corrupt_npy_and_json(toy, tamper):
    root = toy(n=3, maxcount=5)
    tamper(root, "train-000000.tar", replace_member("acc.npy", b"\x93NUMPY garbage"))
    with pytest.raises(ShardError, match=r"key 's001', field 'acc.npy': not a loadable .npy"):
        read_all(root, fields=["acc"])
    tamper(root, "train-000000.tar", replace_member("meta.json", b"{not json"))
    with pytest.raises(ShardError, match=r"key 's001', field 'meta.json': invalid JSON"):
        read_all(root, fields=["meta"])


def test_unknown_split(toy):
    with pytest.raises(ManifestError, match=r"no split 'valid'; splits are \['train'\]"):
        ShardStream(toy(n=3), "valid")


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_mode_counts_and_keeps_batches_full(toy, tamper, caplog, workers):
    root = toy(n=12, maxcount=5)
    tamper(root, "train-000000.tar", replace_member("image.png", b"garbage"))
    path = root / "train-000002.tar"  # the last shard (2 samples) is cut short too
    path.write_bytes(path.read_bytes()[:1500])
    stream = ShardStream(root, "train", fields=["image", "label"], batch_size=4, on_error="skip", shuffle=False)
    with caplog.at_level(logging.WARNING, logger="multiview.data.stream"):
        batches = list(make_loader(stream, num_workers=workers))
    assert [len(b["__key__"]) for b in batches] == [4, 4, 4] and stream.skipped == 3
    assert "skipped 3 bad sample(s) this epoch" in caplog.text
    real = [k for b in batches for k, pad in zip(b["__key__"], b["__pad__"]) if not pad]
    assert sorted(real) == [f"s{i:03d}" for i in range(12) if i not in (1, 10, 11)]
    if workers:
        return  # the per-sample lines are logged inside the worker processes
    assert "key 's001', field 'image.png': corrupt" in caplog.text and "train-000002.tar: truncated" in caplog.text
    assert len(list(iter_samples(root, "train", fields=["label"], on_error="skip"))) == 10
    with pytest.raises(ShardError):
        list(ShardStream(root, "train", fields=["image"], batch_size=4, shuffle=False))


@pytest.mark.parametrize("reader", ["indexed", "stream"])
@pytest.mark.parametrize("workers", [0, 2])
def test_a_padded_epoch_counts_each_bad_sample_once(tmp_path, tamper, caplog, reader, workers):
    """Skip mode replaces bad samples by the following ones, so a slot runs out and reads its shards again to
    fill its quota (the repeats flagged ``__pad__``): its 3 corrupt samples fail on every read, but the epoch
    skipped 3 samples, not one per read (it reported 6 before)."""
    root = make_uneven(tmp_path)  # shards of 3, 9, 4, 12, 1, 7, 5 samples
    tamper(root, "train-000000.tar", lambda members: [(n, b"garbage" if n.endswith(".png") else b) for n, b in members])
    kind = ShardStream if reader == "indexed" else WebStream
    stream = kind(root, "train", fields=["image", "label"], batch_size=4, on_error="skip", shuffle=False, tail="pad")
    with caplog.at_level(logging.WARNING, logger="multiview.data"):
        batches = list(make_loader(stream, num_workers=workers))
    pads = sum(int(p) for b in batches for p in b["__pad__"])
    real = [k for b in batches for k, pad in zip(b["__key__"], b["__pad__"]) if not pad]
    assert pads > 3  # more repeats than bad samples: at least one re-read of the corrupt shard happened
    assert sorted(set(real)) == [f"k{i:02d}" for i in range(3, 41)]
    assert stream.skipped == 3
    assert "skipped 3 bad sample(s) this epoch" in caplog.text and "skipped 6" not in caplog.text


def test_a_cut_shard_read_again_counts_its_lost_samples_once(tmp_path):
    """The streamed reader counts the rest of a cut shard as lost once per epoch, however often a slot reads it
    (a padded slot reads its shards again), and keeps what came before the cut each time."""
    root = make_uneven(tmp_path)
    path = root / "train-000006.tar"  # 5 samples: cut inside the second
    path.write_bytes(path.read_bytes()[:5000])
    stream = WebStream(root, "train", fields=["image", "label"], batch_size=4, on_error="skip")
    policy = ErrorPolicy("skip", "test")
    first, again = stream._read_shard(6, policy), stream._read_shard(6, policy)
    assert len(first) == len(again) == 1 and policy.skipped == 4
    other = ErrorPolicy("skip", "test")  # a keyless error without an ident counts every time
    for _ in range(2):
        other.handle(ShardError("x.tar", "truncated"), count=3)
    assert other.skipped == 6
