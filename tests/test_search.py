"""Search against a hand-written probability table and against a real (tiny) Transformer."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from conftest import tiny_transformer
from dragoman import search
from dragoman.data.tokenizers import BOS, EOS

A, B = 4, 5
V = 6


def table(prefix: tuple[int, ...]) -> dict[int, float]:
    """Greedy takes A (0.6) and ends with 0.6 × 0.4 = 0.24; B then EOS has 0.4 × 0.9 = 0.36."""
    return {
        (): {A: 0.6, B: 0.4},
        (A,): {A: 0.3, B: 0.3, EOS: 0.4},
        (B,): {A: 0.05, B: 0.05, EOS: 0.9},
    }.get(prefix, {EOS: 1.0})


@dataclass
class TableState:
    prefixes: list[tuple[int, ...]]

    def select(self, index: torch.Tensor) -> TableState:
        return TableState([self.prefixes[i] for i in index.tolist()])

    def expand(self, beams: int) -> TableState:
        return TableState([p for p in self.prefixes for _ in range(beams)])


class TableModel:
    """A 'model' whose next-token distribution is `table(prefix)`."""

    def step(self, tokens: torch.Tensor, state: TableState):
        prefixes = [p if t == BOS else p + (t,) for p, t in zip(state.prefixes, tokens.tolist())]
        logits = torch.full((len(prefixes), V), -1e9)
        for row, prefix in enumerate(prefixes):
            for token, p in table(prefix).items():
                logits[row, token] = math.log(p)
        return logits, TableState(prefixes)


def run_table(fn, n: int = 1, **kwargs) -> search.Hypotheses:
    return fn(TableModel(), TableState([()] * n), torch.full((n,), 5), **kwargs)


def test_greedy_follows_the_locally_best_token():
    hyps = run_table(search.greedy)
    assert hyps.tokens == [[[A]]]
    assert hyps.scores[0][0] == pytest.approx(math.log(0.24))


def test_beam_finds_the_more_probable_hypothesis_greedy_misses():
    hyps = run_table(search.beam_search, beam=2, n_best=2, alpha=0.0)
    assert hyps.tokens == [[[B], [A]]]
    assert hyps.scores[0] == pytest.approx([math.log(0.36), math.log(0.24)])


def test_beam_search_batches_sentences_independently():
    hyps = run_table(search.beam_search, n=3, beam=2, alpha=0.0)
    assert hyps.tokens == [[[B]]] * 3


def test_length_penalty_divides_the_score():
    hyps = run_table(search.beam_search, beam=2, alpha=1.0)
    assert hyps.scores[0][0] == pytest.approx(math.log(0.36) / search.length_penalty(2, 1.0))


def _transformer_inputs(model, n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 20, (n, 7), generator=g)
    for i in range(n):  # ragged: PAD (0) after a random length
        src[i, int(torch.randint(2, 8, (1,), generator=g)) :] = 0
    lengths = (src != 0).sum(1)
    return src, lengths * 2 + 3


@torch.no_grad()
def test_beam_1_equals_greedy_on_a_transformer():
    model = tiny_transformer(seed=3)
    src, max_len = _transformer_inputs(model)
    greedy = search.greedy(model, model.init_state(model.encode(src)), max_len)
    beam = search.beam_search(model, model.init_state(model.encode(src)), max_len, beam=1)
    assert beam.tokens == greedy.tokens
    assert [s[0] for s in beam.scores] == pytest.approx(
        [s[0] / search.length_penalty(len(t[0]) + 1, 1.0) for s, t in zip(greedy.scores, greedy.tokens)],
        abs=1e-4,
    )


@torch.no_grad()
def test_outputs_respect_max_len():
    model = tiny_transformer(seed=4)
    src, _ = _transformer_inputs(model)
    max_len = torch.tensor([0, 1, 2, 3, 4, 5])
    for hyps in (
        search.greedy(model, model.init_state(model.encode(src)), max_len),
        search.beam_search(model, model.init_state(model.encode(src)), max_len, beam=3, n_best=3),
    ):
        for limit, nbest in zip(max_len.tolist(), hyps.tokens):
            assert all(len(t) <= limit for t in nbest)


@torch.no_grad()
def test_sampling_is_reproducible_with_a_seed_and_top_k_1_is_greedy():
    model = tiny_transformer(seed=5)
    src, max_len = _transformer_inputs(model)

    def sample(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return search.sample(model, model.init_state(model.encode(src)), max_len, generator=g, **kw).tokens

    assert sample(7, temperature=1.5) == sample(7, temperature=1.5)
    assert sample(7, temperature=1.5) != sample(8, temperature=1.5)
    greedy = search.greedy(model, model.init_state(model.encode(src)), max_len).tokens
    assert sample(7, top_k=1) == greedy
    assert sample(7, top_p=1e-6) == greedy  # the nucleus keeps only the top token


def test_early_low_scoring_endings_do_not_crowd_out_the_best_hypothesis():
    """A confident model: the right answer is A A A (p ≈ 0.97); ending early is possible but
    improbable. With K = 2, two early endings are finished before the right one is."""

    def confident(prefix):
        return {A: 0.99, EOS: 0.01} if len(prefix) < 3 else {EOS: 0.99, A: 0.01}

    global table
    original, table = table, confident
    try:
        hyps = run_table(search.beam_search, beam=2, n_best=2, alpha=1.0)
    finally:
        table = original
    assert hyps.tokens[0][0] == [A, A, A]
