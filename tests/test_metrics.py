"""ROUGE against values worked out by hand (n-gram counts in the comments), the effect of the stemmer,
and the report that `dragoman evaluate --metric` prints."""

from __future__ import annotations

import re

import pytest
from sacrebleu.metrics import BLEU

from dragoman.metrics import REPORTS, report, rouge_scores

# rouge-score's tokens: lowercased, every run of characters other than a-z0-9 is a space; with the
# Porter stemmer, words of more than 3 characters are stemmed.
#
# Pair 1: ref "the cat sat on the mat", hyp "the cat lay on the mat"; no word is over 3 characters.
#   unigrams: the×2, cat, on, mat are shared: 5 of 6 on each side → P = R = F = 5/6 = 83.33
#   bigrams:  ref the-cat cat-sat sat-on on-the the-mat, hyp the-cat cat-lay lay-on on-the the-mat:
#             3 of 5 shared (the-cat, on-the, the-mat) → F = 3/5 = 60.00
#   LCS:      "the cat on the mat", 5 → P = R = F = 5/6 = 83.33
#
# Pair 2: ref "Running tests!", hyp "runs the test"; stemmed: ref run test, hyp run the test.
#   unigrams: run, test shared: P = 2/3, R = 2/2, F = 2·(2/3·1)/(2/3 + 1) = 0.8 = 80.00
#   bigrams:  ref run-test, hyp run-the the-test: none shared → 0
#   LCS:      "run test", 2 → P = 2/3, R = 1 → F = 80.00
#   Without the stemmer ref is running tests, hyp runs the test: nothing shared, all three are 0.
REFS = ["the cat sat on the mat", "Running tests!"]
HYPS = ["the cat lay on the mat", "runs the test"]
PAIR_1 = {"rouge1": 500 / 6, "rouge2": 60.0, "rougeL": 500 / 6}
PAIR_2 = {"rouge1": 80.0, "rouge2": 0.0, "rougeL": 80.0}


@pytest.mark.parametrize("i, expected", [(0, PAIR_1), (1, PAIR_2)])
def test_rouge_of_one_pair_matches_the_hand_computation(i, expected):
    assert rouge_scores([HYPS[i]], [REFS[i]]) == pytest.approx(expected)


def test_rouge_is_the_mean_of_the_sentence_f1s():
    expected = {name: (PAIR_1[name] + PAIR_2[name]) / 2 for name in PAIR_1}  # 81.67, 30.00, 81.67
    assert rouge_scores(HYPS, REFS) == pytest.approx(expected)


def test_the_stemmer_is_on():
    """The second pair shares words only once stemmed (running → run, tests → test)."""
    from rouge_score.rouge_scorer import RougeScorer

    plain = RougeScorer(["rouge1"], use_stemmer=False).score(REFS[1], HYPS[1])["rouge1"].fmeasure
    assert plain == 0.0
    assert rouge_scores(HYPS[1:], REFS[1:])["rouge1"] == pytest.approx(80.0)


def test_case_and_punctuation_do_not_count_but_an_empty_hypothesis_scores_zero():
    assert rouge_scores(["The Cat, sat."], ["the cat sat"]) == pytest.approx(dict.fromkeys(PAIR_1, 100.0))
    assert rouge_scores(["", "the cat sat"], ["the cat sat", "the cat sat"]) == pytest.approx(
        dict.fromkeys(PAIR_1, 50.0)
    )


def test_report_prints_the_metrics_asked_for_in_order_with_signatures():
    text = report(HYPS, REFS, ["rouge", "bleu"])
    lines = text.splitlines()
    assert lines[0] == "ROUGE-1 = 81.67  ROUGE-2 = 30.00  ROUGE-L = 81.67  (F1 × 100, mean of 2 sentences)"
    assert lines[1] == "  signature: rouge-score:0.1.2|stemmer:porter|tok:default|avg:sentence-f1"
    assert lines[2].startswith(f"BLEU = {BLEU().corpus_score(HYPS, [REFS]).score:.2f} ")
    assert len(lines) == 4 and lines[3].startswith("  signature: nrefs:1|")


def test_the_default_report_is_bleu_then_chrf():
    lines = report(HYPS, REFS).splitlines()
    assert [re.sub(r" = .*", "", line) for line in lines[::2]] == ["BLEU", "chrF2"]
    assert set(REPORTS) == {"bleu", "chrf", "rouge"}
