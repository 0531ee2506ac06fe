"""Shards: ids and offsets written a chunk at a time read back exactly, through memory maps."""

import numpy as np
import pytest

from dragoman.data.shards import Shard, ShardWriter
from dragoman.errors import DragomanError


def write(prefix, chunks) -> int:
    writer = ShardWriter(prefix)
    for chunk in chunks:
        writer.extend(chunk)
    return writer.close()


def test_sequences_written_in_chunks_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 50_000, size=n).tolist() for n in rng.integers(0, 30, size=2_500)]
    chunks = [sequences[i : i + 700] for i in range(0, len(sequences), 700)]
    chunks.insert(2, [])  # an empty chunk changes nothing
    assert write(tmp_path / "train.src", chunks) == len(sequences)

    shard = Shard(tmp_path / "train.src")
    assert len(shard) == len(sequences)
    assert [shard[i].tolist() for i in range(len(shard))] == sequences
    lengths = [len(s) for s in sequences]
    assert shard.lengths.tolist() == lengths
    assert shard.lengths.dtype == np.int32
    # the offsets are an ordinary .npy file: 0, then where each sequence ends
    offsets = np.load(tmp_path / "train.src.offsets.npy", allow_pickle=False)
    assert offsets.dtype == np.int64
    assert offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)]).tolist()


def test_close_leaves_only_the_two_shard_files(tmp_path):
    write(tmp_path / "train.src", [[[4, 5], [6]], (np.array([7, 8, 9]),)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.src.ids", "train.src.offsets.npy"]
    assert Shard(tmp_path / "train.src")[2].tolist() == [7, 8, 9]


def test_an_empty_shard_has_no_sequences(tmp_path):
    assert write(tmp_path / "dev.src", []) == 0
    shard = Shard(tmp_path / "dev.src")
    assert len(shard) == 0
    assert shard.lengths.tolist() == []


def test_truncated_ids_are_refused(tmp_path):
    write(tmp_path / "train.src", [[[4, 5, 6], [7]]])
    ids = tmp_path / "train.src.ids"
    ids.write_bytes(ids.read_bytes()[:-4])
    with pytest.raises(DragomanError, match="prepared data is truncated"):
        Shard(tmp_path / "train.src")
