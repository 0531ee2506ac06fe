"""Corpus-level scores through sacreBLEU (Post, 2018): BLEU and chrF, with their signatures."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    return {
        "bleu": BLEU().corpus_score(hypotheses, [references]).score,
        "chrf": CHRF().corpus_score(hypotheses, [references]).score,
    }


def report(hypotheses: list[str], references: list[str]) -> str:
    """Human-readable scores with sacreBLEU's signatures (for papers and READMEs)."""
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return f"{b}\n  signature: {bleu.get_signature()}\n{c}\n  signature: {chrf.get_signature()}"
