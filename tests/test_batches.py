"""Length bucketing: batch boundaries computed once, exactly as a per-example greedy cut would."""

import numpy as np
import pytest

from dragoman.data.batches import Batches, bucket


def greedy_cut(lengths: list[int], batch_tokens: int) -> list[int]:
    """The definition, one example at a time: a batch grows until count × longest > batch_tokens."""
    bounds, start, longest = [0], 0, 0
    for end, length in enumerate(lengths):
        longest = max(longest, length)
        if (end - start + 1) * longest > batch_tokens and end > start:
            bounds.append(end)
            start, longest = end, length
    if start < len(lengths):
        bounds.append(len(lengths))
    return bounds


@pytest.mark.parametrize("batch_tokens", [1, 7, 100, 512, 10_000])
def test_bucket_cuts_where_the_greedy_definition_does(batch_tokens):
    rng = np.random.default_rng(batch_tokens)
    # sorted by source length, but the padded size (max of both sides) goes up and down
    src = np.sort(rng.integers(1, 60, size=3_000))
    lengths = np.maximum(src, src + rng.integers(-5, 30, size=src.size))
    lengths[rng.integers(0, src.size, size=10)] = 700  # longer than some batch_tokens: alone
    assert bucket(lengths, batch_tokens).tolist() == greedy_cut(lengths.tolist(), batch_tokens)


def test_bucket_of_nothing():
    assert bucket(np.zeros(0, np.int32), 100).tolist() == [0]


def example_batches(n: int = 2_000, seed: int = 5) -> tuple[Batches, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 12, size=n).astype(np.int32)
    tgt = np.clip(src + rng.integers(-2, 3, size=n), 1, None).astype(np.int32)
    return Batches(np.maximum(src, tgt + 1), (src, tgt), 64, seed=3), src, tgt


def test_without_shuffling_examples_sort_by_keys_then_index():
    batches, src, tgt = example_batches()
    order = np.concatenate(batches.epoch(0, shuffle=False))
    assert order.tolist() == np.lexsort((np.arange(len(src)), tgt, src)).tolist()


def test_an_epoch_shuffles_only_ties_and_the_batch_order():
    batches, src, tgt = example_batches()
    plain = batches.epoch(0, shuffle=False)
    for epoch in range(2):
        shuffled = batches.epoch(epoch)
        assert len(shuffled) == len(plain)
        # the same batch shapes, in another order: each batch's (src, tgt) lengths are unchanged
        shapes = sorted(tuple(zip(src[b].tolist(), tgt[b].tolist())) for b in shuffled)
        assert shapes == sorted(tuple(zip(src[b].tolist(), tgt[b].tolist())) for b in plain)
        assert sorted(np.concatenate(shuffled).tolist()) == list(range(len(src)))
    partitions = [sorted(tuple(sorted(b.tolist())) for b in batches.epoch(e)) for e in (0, 1, 0)]
    assert partitions[0] != partitions[1]  # tied examples meet other ones each epoch
    assert partitions[0] == partitions[2]  # and the same ones when an epoch is replayed


def test_memory_per_example_is_int32_arrays():
    batches, _, _ = example_batches(n=100_000)
    assert batches.order.dtype == np.int32
    assert batches.order.nbytes == 4 * 100_000
    assert len(batches.runs) < 200  # runs of equal keys: as many as distinct (src, tgt) lengths
    assert batches.epoch(1)[0].dtype == np.int32


def test_examples_that_all_tie_are_shuffled_too():
    lengths = np.full(500, 4, dtype=np.int32)
    batches = Batches(lengths, (lengths,), 40, seed=1)
    assert len(batches.runs) == 2  # one run: 0 … 500
    plain = np.concatenate(batches.epoch(0, shuffle=False)).tolist()
    assert plain == list(range(500))
    shuffled = batches.epoch(0)
    assert sorted(np.concatenate(shuffled).tolist()) == plain
    assert sorted(b[0] for b in shuffled) != [b[0] for b in batches.epoch(0, shuffle=False)]
