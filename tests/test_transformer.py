"""The Transformer: cached decoding equals recomputation; padding changes nothing."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_transformer
from dragoman import search
from dragoman.data.tokenizers import BOS


@pytest.mark.parametrize("options", [{}, {"pre_norm": False}, {"positions": "learned"}])
@torch.no_grad()
def test_cached_step_decoding_equals_full_recomputation(options):
    model = tiny_transformer(seed=1, **options)
    src = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    tgt_in = torch.tensor([[BOS, 4, 5, 6, 7, 8], [BOS, 9, 10, 11, 12, 13]])
    full = model(src, tgt_in)  # (B, T, V)
    state = model.init_state(model.encode(src))
    for t in range(tgt_in.size(1)):
        logits, state = model.step(tgt_in[:, t], state)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_padding_does_not_change_the_encoder_output():
    model = tiny_transformer(seed=2)
    alone = model.encode(torch.tensor([[5, 6, 7]])).states
    padded = model.encode(torch.tensor([[5, 6, 7, 0, 0, 0], [4, 5, 6, 7, 8, 9]])).states
    torch.testing.assert_close(padded[0, :3], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beam", [1, 4])
@torch.no_grad()
def test_batch_invariance_one_at_a_time_equals_one_padded_batch(beam):
    model = tiny_transformer(seed=6)
    sentences = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15], [4, 4, 5, 6]]

    def run(batch):
        width = max(map(len, batch))
        src = torch.tensor([s + [0] * (width - len(s)) for s in batch])
        max_len = torch.tensor([2 * len(s) + 3 for s in batch])
        state = model.init_state(model.encode(src))
        if beam == 1:
            return search.greedy(model, state, max_len).tokens
        return search.beam_search(model, state, max_len, beam=beam, n_best=beam).tokens

    together = run(sentences)
    alone = [run([s])[0] for s in sentences]
    assert together == alone


def test_tied_embeddings_share_one_tensor():
    model = tiny_transformer(share_embeddings=True)
    assert model.output.weight is model.tgt_embed.weight is model.src_embed.weight
    untied = tiny_transformer(tie_output=False)
    assert untied.output.weight is not untied.tgt_embed.weight
