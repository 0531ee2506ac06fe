"""`dragoman translate` and the Python API on a tiny trained model."""

from __future__ import annotations

import logging

import pytest
import yaml

from conftest import write_copy_task
from dragoman.cli import main
from dragoman.config import parse_config
from dragoman.train import train
from dragoman.translator import Translator


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    data = write_copy_task(root / "data", n_train=1000, n_dev=50)
    config = {
        "data": data,
        "model": {"d_model": 32, "heads": 2, "ff": 64, "enc_layers": 1, "dec_layers": 1, "dropout": 0.0},
        "train": {
            "model_dir": str(root / "model"),
            "batch_tokens": 256,
            "max_steps": 60,
            "validate_every": 60,
            "threads": 1,
        },
        "decode": {"max_len_a": 1.0, "max_len_b": 3},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return train(parse_config(config))


def test_python_api_in_three_lines(model_dir):
    translator = Translator.load(model_dir)
    outputs = translator.translate(["a b c", "", "h"])
    assert len(outputs) == 3 and outputs[1] == ""  # an empty input gives an empty output
    assert all(isinstance(o, str) for o in outputs)


def test_translate_reads_stdin_and_writes_stdout(model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("a b\nc d e\n"))
    assert main(["translate", str(model_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == Translator.load(model_dir).translate(["a b", "c d e"])


def test_translate_files_with_n_best(model_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a b\nc\n")
    out = tmp_path / "out.txt"
    assert (
        main(
            [
                "translate",
                str(model_dir),
                "-i",
                str(tmp_path / "in.txt"),
                "-o",
                str(out),
                "--beam",
                "3",
                "--n-best",
                "3",
            ]
        )
        == 0
    )
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "0", "1", "1", "1"]
    scores = [float(r[1]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True)


def test_sampling_with_a_seed_is_reproducible(model_dir):
    translator = Translator.load(model_dir)
    texts = ["a b c d"] * 8
    first = translator.translate(texts, sampling=True, temperature=2.0, seed=3)
    assert first == translator.translate(texts, sampling=True, temperature=2.0, seed=3)


def test_too_long_inputs_are_truncated_with_a_warning(model_dir, caplog):
    translator = Translator.load(model_dir)
    with caplog.at_level(logging.WARNING, logger="dragoman"):
        outputs = translator.translate(["a " * 40, "b"])
    assert len(outputs) == 2
    assert "longer than 16 tokens were truncated" in caplog.text


def test_bad_decoding_options_are_clear_errors(model_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a b\n")
    assert (
        main(["translate", str(model_dir), "--beam", "2", "--n-best", "3", "-i", str(tmp_path / "in.txt")])
        == 2
    )
    assert "n_best" in capsys.readouterr().err
    assert main(["translate", str(model_dir.parent / "nope")]) == 2
    assert "model directory not found" in capsys.readouterr().err
