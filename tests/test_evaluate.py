"""`dragoman evaluate`: sacreBLEU BLEU and chrF with their signatures, and its user errors."""

import re
import subprocess
import sys
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from dragoman.cli import main

REFS = ["the cat sat on the mat", "hello world", "a small test of the scorer"]
HYPS = ["the cat sat on a mat", "hello world", "a tiny test for the scorer"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_bleu_chrf_and_their_signatures(tmp_path, capsys):
    hyp, ref = write_lines(tmp_path / "hyp.txt", HYPS), write_lines(tmp_path / "ref.txt", REFS)
    code, out, err = evaluate(capsys, "--hyp", hyp, "--ref", ref)
    assert code == 0, err
    bleu = BLEU().corpus_score(HYPS, [REFS]).score
    chrf = CHRF().corpus_score(HYPS, [REFS]).score
    assert re.search(rf"^BLEU = {bleu:.2f} ", out, re.MULTILINE)
    assert re.search(rf"^chrF2 = {chrf:.2f}", out, re.MULTILINE)
    signatures = re.findall(r"^  signature: (\S+)$", out, re.MULTILINE)
    assert len(signatures) == 2
    assert all(s.startswith("nrefs:1|") for s in signatures)
    assert "tok:13a" in signatures[0]  # BLEU's signature names its tokenizer


def test_identical_files_score_100(tmp_path, capsys):
    ref = write_lines(tmp_path / "ref.txt", REFS)
    code, out, _ = evaluate(capsys, "--hyp", ref, "--ref", ref)
    assert code == 0
    assert out.startswith("BLEU = 100.00 ")
    assert "chrF2 = 100.00" in out
    assert "nrefs:1" in out


def test_blank_hypotheses_score_zero(tmp_path, capsys):
    """What `translate` writes for a model that outputs nothing: a bad score, not an error."""
    hyp = write_lines(tmp_path / "hyp.txt", ["", "", ""])
    ref = write_lines(tmp_path / "ref.txt", REFS)
    code, out, err = evaluate(capsys, "--hyp", hyp, "--ref", ref)
    assert code == 0, err
    assert out.startswith("BLEU = 0.00 ")
    assert "chrF2 = 0.00" in out


def test_zero_byte_hypothesis_file(tmp_path, capsys):
    hyp = tmp_path / "hyp.txt"
    hyp.write_bytes(b"")
    ref = write_lines(tmp_path / "ref.txt", REFS)
    code, _, err = evaluate(capsys, "--hyp", hyp, "--ref", ref)
    assert code == 2
    assert f"{hyp} has 0 lines, {ref} has 3" in err


def test_line_counts_differ(tmp_path, capsys):
    hyp = write_lines(tmp_path / "hyp.txt", HYPS[:2])
    ref = write_lines(tmp_path / "ref.txt", REFS)
    code, out, err = evaluate(capsys, "--hyp", hyp, "--ref", ref)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("dragoman: error: line counts differ: ")
    assert f"{hyp} has 2 lines, {ref} has 3" in err


def test_missing_hypothesis_file(tmp_path, capsys):
    ref = write_lines(tmp_path / "ref.txt", REFS)
    code, _, err = evaluate(capsys, "--hyp", tmp_path / "nope.txt", "--ref", ref)
    assert code == 2
    assert err.startswith(f"dragoman: error: {tmp_path / 'nope.txt'}: file not found")


def test_needs_hypotheses_or_a_model(tmp_path, capsys):
    ref = write_lines(tmp_path / "ref.txt", REFS)
    code, _, err = evaluate(capsys, "--ref", ref)
    assert code == 2
    assert "give --hyp FILE, or MODEL_DIR with --src FILE" in err


def test_real_process_reports_errors_without_traceback(tmp_path):
    hyp = write_lines(tmp_path / "hyp.txt", HYPS)
    ref = write_lines(tmp_path / "ref.txt", REFS + ["one more"])
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "evaluate", "--hyp", str(hyp), "--ref", str(ref)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"dragoman: error: line counts differ: {hyp} has 3 lines, {ref} has 4. "
        "hypotheses and references must be parallel, one per line\n"
    )


def test_real_process_scores(tmp_path):
    ref = write_lines(tmp_path / "ref.txt", REFS)
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "evaluate", "--hyp", str(ref), "--ref", str(ref)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("BLEU = 100.00 ")


def test_scores_a_model_on_a_source_file(tmp_path, capsys):
    from dragoman.config import parse_config
    from dragoman.train import train

    lines = ["a b c", "b c d", "c d e", "d e a", "e a b"]
    write_lines(tmp_path / "train.src", lines)
    write_lines(tmp_path / "train.tgt", [s.upper() for s in lines])
    config = parse_config(
        {
            "data": {
                "src": "src",
                "tgt": "tgt",
                "train": str(tmp_path / "train"),
                "max_len": 8,
                "tokenizer": {"kind": "word", "vocab_size": 20},
            },
            "model": {"d_model": 16, "heads": 2, "ff": 16, "enc_layers": 1, "dec_layers": 1},
            "train": {"model_dir": str(tmp_path / "model"), "max_steps": 1, "device": "cpu"},
        }
    )
    model_dir = train(config)
    capsys.readouterr()
    src = write_lines(tmp_path / "test.src", lines[:2])
    ref = write_lines(tmp_path / "test.ref", [s.upper() for s in lines[:2]])
    code, out, err = evaluate(capsys, model_dir, "--src", src, "--ref", ref, "--max-len-b", 3)
    assert code == 0, err
    assert re.search(r"^BLEU = \d+\.\d\d ", out, re.MULTILINE)
    assert "nrefs:1" in out

    ref3 = write_lines(tmp_path / "three.ref", REFS)
    code, _, err = evaluate(capsys, model_dir, "--src", src, "--ref", ref3)
    assert code == 2
    assert f"line counts differ: {src} has 2 lines, {ref3} has 3" in err
