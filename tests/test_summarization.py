"""The summarization pieces: `too_long: truncate` keeps and counts long training pairs, `dragoman evaluate
--metric rouge` scores with ROUGE, and evaluating a model says how many sources it truncated."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from dragoman.cli import main
from dragoman.metrics import rouge_scores

# Word-level "documents" of 2 to 9 words whose "summary" is their first two words; max_len 6, so the
# sources of 7, 8 and 9 words are too long (the summaries never are).
SOURCES = [" ".join("abcdefghi"[: 2 + i % 8]) for i in range(40)]  # lengths 2..9, five times each
SUMMARIES = [" ".join(s.split()[:2]) for s in SOURCES]
LONG = sum(len(s.split()) > 6 for s in SOURCES)  # 15: the 7-, 8- and 9-word ones, five of each


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_config(root: Path, too_long: str) -> Path:
    for split in ("train", "dev"):
        write_lines(root / f"{split}.src", SOURCES)
        write_lines(root / f"{split}.tgt", SUMMARIES)
    data = {"src": "src", "tgt": "tgt", "train": str(root / "train"), "dev": str(root / "dev")}
    data |= {"max_len": 6, "too_long": too_long, "tokenizer": {"kind": "word", "vocab_size": 32}}
    config = tiny_config(data, root / "model", max_steps=2, validate_every=2, dev_sentences=4)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("too_long, kept", [("truncate", 40), ("drop", 40 - LONG)])
def test_prepare_counts_long_training_pairs_and_truncates_or_drops_them(tmp_path, caplog, too_long, kept):
    caplog.set_level(logging.INFO, logger="dragoman")
    config = write_config(tmp_path, too_long)
    assert main(["prepare", str(config)]) == 0
    action = "truncated" if too_long == "truncate" else "dropped"
    assert f"train: 40 pairs read, 0 empty or whitespace-only skipped, {LONG} longer than 6 tokens {action}, {kept} kept" in caplog.text  # fmt: skip
    assert f"dev: 40 pairs read, 0 empty or whitespace-only skipped, {LONG} longer than 6 tokens truncated, 40 kept" in caplog.text  # fmt: skip
    saved = json.loads((tmp_path / "model" / "data" / "prepared.json").read_text())
    assert saved["splits"]["train"]["too_long"] == LONG and saved["splits"]["train"]["kept"] == kept


def test_evaluate_metric_rouge_prints_rouge_then_bleu(tmp_path, capsys):
    hyps = ["the cat sat", "running tests", ""]
    refs = ["the cat sat on the mat", "runs the test", "nothing here"]
    hyp, ref = write_lines(tmp_path / "hyp", hyps), write_lines(tmp_path / "ref", refs)
    assert main(["evaluate", "--hyp", str(hyp), "--ref", str(ref), "--metric", "rouge,bleu"]) == 0
    out = capsys.readouterr().out.splitlines()
    # by hand, ROUGE-1: 3 of 3 hypothesis and of 6 reference words → F1 2/3; 2 of 2 and 2 of 3 stemmed
    # (run test) → F1 0.8; empty → 0; mean (66.67 + 80 + 0) / 3 = 48.89
    assert rouge_scores(hyps, refs)["rouge1"] == pytest.approx((200 / 3 + 80) / 3)
    assert out[0].startswith("ROUGE-1 = 48.89  ROUGE-2 = ")
    assert "stemmer:porter" in out[1]
    assert out[2].startswith("BLEU = ") and len(out) == 4


def test_evaluate_refuses_an_unknown_metric(tmp_path, capsys):
    ref = write_lines(tmp_path / "ref", ["a"])
    assert main(["evaluate", "--hyp", str(ref), "--ref", str(ref), "--metric", "bleu,rogue"]) == 2
    err = capsys.readouterr().err
    assert "--metric bleu,rogue: unknown metric rogue" in err and "bleu, chrf, rouge" in err


def test_evaluating_a_model_reports_how_many_sources_were_truncated(tmp_path, capsys):
    config = write_config(tmp_path, "truncate")
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    src = write_lines(tmp_path / "test.src", SOURCES[:10])  # 2..9, 2..3 words: 3 longer than 6
    ref = write_lines(tmp_path / "test.ref", SUMMARIES[:10])
    code = main(
        ["evaluate", str(tmp_path / "model"), "--src", str(src), "--ref", str(ref), "--metric", "rouge"]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert re.match(r"ROUGE-1 = \d+\.\d\d  ROUGE-2 = \d+\.\d\d  ROUGE-L = \d+\.\d\d ", out[0])
    assert out[-1] == "3 of 10 sources longer than 6 tokens (data.max_len) were truncated"
