"""Scores of output text against references, each reported with a signature that pins its settings.

- BLEU and chrF: corpus-level, through sacreBLEU (Post, 2018).
- ROUGE-1, ROUGE-2 and ROUGE-L (Lin, 2004) for summaries: through Google's rouge-score, the
  reimplementation of ROUGE-1.5.5 most summarization papers now report. Each is the F1 of one
  hypothesis against its reference, × 100 and averaged over the sentences. Tokens are lowercased
  ASCII letters and digits (rouge-score's tokenizer drops everything else), and the Porter stemmer
  is on (`use_stemmer=True`, as in the papers), so "packages" matches "package".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sacrebleu.metrics import BLEU, CHRF

ROUGE_TYPES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    return {
        "bleu": BLEU().corpus_score(hypotheses, [references]).score,
        "chrf": CHRF().corpus_score(hypotheses, [references]).score,
    }


def rouge_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """{"rouge1", "rouge2", "rougeL"}: F1 × 100, the mean over the sentence pairs (0 for none)."""
    from rouge_score.rouge_scorer import RougeScorer  # imports nltk: only when asked for
    from rouge_score.tokenizers import DefaultTokenizer

    # the default tokenizer, given rather than defaulted: then RougeScorer logs no "Using default..."
    scorer = RougeScorer(list(ROUGE_TYPES), tokenizer=DefaultTokenizer(use_stemmer=True))
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        for name, score in scorer.score(reference, hypothesis).items():  # score(target, prediction)
            totals[name] += score.fmeasure
    return {name: 100.0 * total / max(len(hypotheses), 1) for name, total in totals.items()}


def _sacrebleu_report(metric: BLEU | CHRF, hypotheses: list[str], references: list[str]) -> str:
    return f"{metric.corpus_score(hypotheses, [references])}\n  signature: {metric.get_signature()}"


def _rouge_report(hypotheses: list[str], references: list[str]) -> str:
    from importlib.metadata import version

    scores = rouge_scores(hypotheses, references)
    values = "  ".join(f"{ROUGE_TYPES[name]} = {value:.2f}" for name, value in scores.items())
    return (
        f"{values}  (F1 × 100, mean of {len(hypotheses)} sentences)\n"
        f"  signature: rouge-score:{version('rouge-score')}|stemmer:porter|tok:default|avg:sentence-f1"
    )


REPORTS: dict[str, Callable[[list[str], list[str]], str]] = {  # `dragoman evaluate --metric NAME`
    "bleu": lambda hyps, refs: _sacrebleu_report(BLEU(), hyps, refs),
    "chrf": lambda hyps, refs: _sacrebleu_report(CHRF(), hyps, refs),
    "rouge": _rouge_report,
}


def report(hypotheses: list[str], references: list[str], metrics: Sequence[str] = ("bleu", "chrf")) -> str:
    """Human-readable scores with their signatures (for papers and READMEs), one metric after the
    other in the order asked (names: the keys of REPORTS)."""
    return "\n".join(REPORTS[name](hypotheses, references) for name in metrics)


def confusion_matrix(gold: list[int], predicted: list[int], classes: int) -> list[list[int]]:
    """counts[g][p]: texts of class g predicted as p."""
    counts = [[0] * classes for _ in range(classes)]
    for g, p in zip(gold, predicted, strict=True):
        counts[g][p] += 1
    return counts


def classification_scores(gold: list[int], predicted: list[int], classes: int) -> dict[str, float]:
    """Accuracy and macro-F1, in percent. Macro-F1 is the unweighted mean over the classes of the
    data of F1 = 2·precision·recall / (precision + recall); a class never predicted has F1 0."""
    counts = confusion_matrix(gold, predicted, classes)
    present = [c for c in range(classes) if any(counts[c]) or any(row[c] for row in counts)]
    f1s = []
    for c in present:
        true_pos = counts[c][c]
        gold_c, predicted_c = sum(counts[c]), sum(row[c] for row in counts)
        f1s.append(200.0 * true_pos / (gold_c + predicted_c) if gold_c + predicted_c else 0.0)
    correct = sum(counts[c][c] for c in range(classes))
    return {
        "accuracy": 100.0 * correct / max(len(gold), 1),
        "f1": sum(f1s) / max(len(f1s), 1),
    }
