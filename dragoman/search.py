"""Greedy, beam and sampling search over the decoding contract (models/base.py).

Token ids in, token ids out: nothing here knows about text or about which model it drives. Each
search starts from BOS, or from `start`, a language model's last prompt tokens (see models/lm.py).
All three are batched over sentences (and beams), and drop a sentence from the batch as soon as
it is finished, so the work per step shrinks as the batch empties.

Shapes: B sentences, A still-active sentences, K beam size, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dragoman.data.tokenizers import BOS, EOS
from dragoman.models.base import DecoderState, Decoding


@dataclass
class Hypotheses:
    """Per sentence, its n-best outputs (token ids without BOS/EOS) and their scores, best first.

    Scores are summed log-probabilities; for beam search divided by the length penalty.
    """

    tokens: list[list[list[int]]]
    scores: list[list[float]]

    def best(self) -> list[list[int]]:
        return [nbest[0] for nbest in self.tokens]


def _force_eos(logp: Tensor, must_end: Tensor) -> Tensor:
    """Rows where `must_end` may only produce EOS (the maximum length is reached)."""
    if must_end.any():
        eos_only = torch.full_like(logp[0], float("-inf"))
        eos_only[EOS] = 0.0
        logp = torch.where(must_end[:, None], eos_only, logp)
    return logp


def _one_path(
    model: Decoding,
    state: DecoderState,
    max_len: Tensor,
    choose: Callable[[Tensor], Tensor],
    start: Tensor | None = None,
) -> Hypotheses:
    """Extend one hypothesis per sentence, choosing each next token with `choose(logp) → (A,)`."""
    B = max_len.numel()
    active = torch.arange(B, device=max_len.device)  # original index of each row
    tokens = _start(start, B, max_len.device)
    outputs: list[list[int]] = [[] for _ in range(B)]
    scores = [0.0] * B
    history: list[Tensor] = []  # (A,) chosen tokens per step, with the rows active then
    step_scores: list[Tensor] = []
    rows: list[Tensor] = []
    for t in range(int(max_len.max()) + 1):
        logits, state = model.step(tokens, state)
        logp = _force_eos(torch.log_softmax(logits.float(), dim=-1), t >= max_len[active])
        tokens = choose(logp)  # (A,)
        history.append(tokens)
        step_scores.append(logp.gather(1, tokens[:, None])[:, 0])
        rows.append(active)
        done = tokens == EOS
        if done.any():
            keep = (~done).nonzero()[:, 0]
            active, tokens, state = active[keep], tokens[keep], state.select(keep)
        if active.numel() == 0:
            break
    # One pass over the history at the end: Python work per token, not per token and step.
    for chosen, score, row in zip(history, step_scores, rows):
        for b, tok, s in zip(row.tolist(), chosen.tolist(), score.tolist()):
            scores[b] += s
            if tok != EOS:
                outputs[b].append(tok)
    return Hypotheses([[out] for out in outputs], [[s] for s in scores])


def _start(start: Tensor | None, B: int, device: torch.device) -> Tensor:
    """The first tokens fed: BOS, or a language model's last prompt tokens (B,)."""
    return torch.full((B,), BOS, dtype=torch.long, device=device) if start is None else start


def greedy(model: Decoding, state: DecoderState, max_len: Tensor, start: Tensor | None = None) -> Hypotheses:
    """The most probable next token at every step. max_len: (B,) output tokens before EOS."""
    return _one_path(model, state, max_len, lambda logp: logp.argmax(dim=-1), start)


def sample(
    model: Decoding,
    state: DecoderState,
    max_len: Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
) -> Hypotheses:
    """Ancestral sampling, optionally from the top-k tokens and/or the top-p nucleus
    (Holtzman et al., 2020). Reproducible with a seeded `generator`."""

    def choose(logp: Tensor) -> Tensor:
        logits = logp / temperature
        if top_k > 0:
            kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            # Drop a token when the tokens before it already reach top_p (the first always stays).
            drop = probs.cumsum(dim=-1) - probs >= top_p
            logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _one_path(model, state, max_len, choose, start)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length normalisation (Wu et al., 2016): ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    model: Decoding,
    state: DecoderState,
    max_len: Tensor,
    beam: int,
    n_best: int = 1,
    alpha: float = 1.0,
    start: Tensor | None = None,
) -> Hypotheses:
    """Batched beam search over B sentences × K beams with the model's cached state.

    Each step scores all K × V continuations of every sentence and takes the best 2K: the EOS
    candidates ranked within the first K end a hypothesis, the best K others continue. A
    sentence leaves the batch once it has `n_best` finished hypotheses and its best live beam,
    length-normalised, can no longer beat them. (Stopping at K finished hypotheses, fairseq's rule,
    lets a confident model's early low-scoring endings crowd out the best one; stopping when the
    best raw candidate ends, OpenNMT-py's and JoeyNMT's, favours short outputs.) With alpha = 0
    and K = 1 this is exactly greedy search.
    """
    B, K = max_len.numel(), beam
    device = max_len.device
    state = state.expand(K)  # (B·K) rows
    active = torch.arange(B, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    prefixes = _start(start, B, device).repeat_interleave(K)[:, None]  # (B·K, 1), dropped at the end
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    nth_best = torch.full((B,), float("-inf"), device=device)  # -inf until n_best have finished

    for t in range(int(max_len.max()) + 1):
        A = active.numel()
        logits, state = model.step(prefixes[:, -1], state)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (A·K, V)
        logp = _force_eos(logp, (t >= max_len[active]).repeat_interleave(K))
        V = logp.size(-1)
        candidates = (scores[:, :, None] + logp.view(A, K, V)).view(A, K * V)
        top_scores, top_ids = candidates.topk(2 * K, dim=-1)  # (A, 2K), best first
        top_beam, top_token = top_ids // V, top_ids % V
        is_eos = top_token == EOS

        # Finish the hypotheses whose EOS ranks within the first K.
        ending = is_eos & (torch.arange(2 * K, device=device) < K) & top_scores.isfinite()
        for a, rank in ending.nonzero().tolist():
            row = a * K + int(top_beam[a, rank])
            tokens = prefixes[row, 1:].tolist()
            score = float(top_scores[a, rank]) / length_penalty(len(tokens) + 1, alpha)
            b = int(active[a])
            finished[b].append((score, tokens))
            if len(finished[b]) >= n_best:
                nth_best[b] = sorted((h[0] for h in finished[b]), reverse=True)[n_best - 1]

        # Continue with the best K non-EOS candidates (at most K of the 2K are EOS).
        keep_scores, keep_rank = top_scores.masked_fill(is_eos, float("-inf")).topk(K, dim=-1)
        rows = (torch.arange(A, device=device)[:, None] * K + top_beam.gather(1, keep_rank)).view(-1)
        prefixes = torch.cat([prefixes[rows], top_token.gather(1, keep_rank).view(-1, 1)], dim=1)
        scores = keep_scores
        state = state.select(rows)

        # Done when no live beam could still win: its score only falls as it grows, so compare
        # with it ended at the next step (Hugging Face's heuristic; exact when alpha = 0).
        best_live = scores[:, 0] / length_penalty(t + 2, alpha)
        threshold = nth_best[active]
        done = threshold.isfinite() & (threshold >= best_live)  # (A,)
        if done.all():
            break
        if done.any():
            keep = (~done).nonzero()[:, 0]
            keep_rows = (keep[:, None] * K + torch.arange(K, device=device)).view(-1)
            active, scores = active[keep], scores[keep]
            prefixes, state = prefixes[keep_rows], state.select(keep_rows)

    best = [sorted(hyps, key=lambda h: -h[0])[:n_best] for hyps in finished]
    return Hypotheses([[h[1] for h in hyps] for hyps in best], [[h[0] for h in hyps] for hyps in best])
