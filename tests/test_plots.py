"""Training curves and attention heatmaps: valid PNG/SVG files from hand-written logs and hand-made
alignments, the errors a user can cause, and `dragoman plot` / `dragoman attention` on tiny trained models."""

from __future__ import annotations

import io
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config, write_copy_task
from dragoman.cli import main
from dragoman.config import parse_config
from dragoman.errors import DragomanError
from dragoman.plots import plot_attention, plot_training, read_metrics
from dragoman.train import train
from dragoman.translator import Alignment, Translation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RECORDS = [
    {"kind": "train", "step": 50, "loss": 8.04, "lr": 0.000255, "tokens_per_s": 1171.0, "epoch": 0},
    {"kind": "train", "step": 100, "loss": 7.1, "lr": 0.0005, "tokens_per_s": 1180.0, "epoch": 0},
    {"kind": "train", "step": 150, "loss": 6.3, "lr": 0.00041, "tokens_per_s": 1175.0, "epoch": 0},
    {"kind": "train", "step": 200, "loss": 5.8, "lr": 0.00035, "tokens_per_s": 1170.0, "epoch": 1},
    {"kind": "valid", "step": 200, "loss": 5.9, "ppl": 367.9, "bleu": 1.15, "chrf": 7.2},
    {"kind": "train", "step": 250, "loss": 5.2, "lr": 0.00032, "tokens_per_s": 1169.0, "epoch": 1},
    {"kind": "valid", "step": 250, "loss": 5.1, "ppl": 164.0},  # no BLEU/chrF: that point is left out
]


def write_log(model_dir: Path, records: list[dict] = RECORDS, tail: str = "") -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (model_dir / "metrics.jsonl").write_text(text, encoding="utf-8")
    return model_dir


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def alignment(layers: int = 2, heads: int = 3, source: str = "a b c $_$", target: str = "x y") -> Alignment:
    src, tgt = source.split(), [*target.split(), "</s>"]
    rng = np.random.default_rng(0)
    weights = rng.random((layers, heads, len(tgt), len(src)))
    weights /= weights.sum(-1, keepdims=True)  # each target token's attention sums to one
    return Alignment(Translation(target, -1.5), src, tgt, weights.astype(np.float32))


# ---------------------------------------------------------------- training curves


def test_training_curves_png_at_the_default_path(tmp_path):
    model_dir = write_log(tmp_path / "model")
    out = plot_training(model_dir, None)
    assert out == model_dir / "training.png"
    width, height = png_size(out)
    assert 600 <= width <= 3000 and 400 <= height <= 3000


def test_training_curves_svg(tmp_path):
    model_dir = write_log(tmp_path / "model")
    out = plot_training(model_dir, tmp_path / "curves.svg")
    assert out == tmp_path / "curves.svg"
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    assert "learning rate" in out.read_text()  # the panels are there, as text
    assert "BLEU" in out.read_text()


def test_the_same_log_draws_the_same_bytes(tmp_path):
    model_dir = write_log(tmp_path / "model")
    first = plot_training(model_dir, tmp_path / "a.svg").read_bytes()
    assert plot_training(model_dir, tmp_path / "b.svg").read_bytes() == first  # no date stamped in
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left


def test_a_truncated_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    model_dir = write_log(tmp_path / "model", tail='{"kind": "train", "step": 300, "lo')
    with caplog.at_level(logging.WARNING, logger="dragoman"):
        records = read_metrics(model_dir / "metrics.jsonl")
        png_size(plot_training(model_dir, None))
    assert records == RECORDS
    assert f"metrics.jsonl:{len(RECORDS) + 1}: skipping a truncated last line" in caplog.text


def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(tmp_path):
    model_dir = write_log(tmp_path / "model")
    lines = (model_dir / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:20]
    (model_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DragomanError) as caught:
        plot_training(model_dir, None)
    assert caught.value.line == 3
    assert caught.value.file == str(model_dir / "metrics.jsonl")
    assert "metrics.jsonl:3: not valid JSON" in str(caught.value)
    assert not (model_dir / "training.png").exists()


def test_a_record_without_a_step_is_an_error_naming_its_line(tmp_path):
    model_dir = write_log(tmp_path / "model", [*RECORDS[:2], {"kind": "train", "loss": 1.0}, *RECORDS[2:]])
    with pytest.raises(DragomanError, match=r"metrics.jsonl:3: not a metrics record"):
        plot_training(model_dir, None)


def test_missing_keys_only_leave_out_their_series(tmp_path):
    records = [{"kind": "train", "step": 10, "loss": 3.0}, {"kind": "valid", "step": 10, "loss": 2.5}]
    model_dir = write_log(tmp_path / "model", records)  # no lr, no ppl, no BLEU/chrF
    svg = plot_training(model_dir, tmp_path / "curves.svg").read_text()
    assert svg.count("not in the log") == 2  # the BLEU/chrF and learning-rate panels say so
    png_size(plot_training(model_dir, None))


@pytest.mark.parametrize(
    "name, problem",
    [("missing", "model directory not found"), ("empty", "no records"), ("no_log", "no metrics log")],
)
def test_no_model_dir_or_no_log_are_errors(tmp_path, name, problem):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("\n")
    (tmp_path / "no_log").mkdir()
    with pytest.raises(DragomanError, match=problem):
        plot_training(tmp_path / name, None)


@pytest.mark.parametrize("name", ["curves.pdf", "curves", "curves.jpg"])
def test_a_suffix_other_than_png_or_svg_is_an_error(tmp_path, name):
    model_dir = write_log(tmp_path / "model")
    with pytest.raises(DragomanError, match=r"\.png or \.svg"):
        plot_training(model_dir, tmp_path / name)
    assert not (tmp_path / name).exists()


# ---------------------------------------------------------------- attention heatmaps


def test_attention_grid_png_and_svg(tmp_path):
    # The source token "$_$" would be invalid matplotlib mathematics: it must be drawn as plain text.
    width, height = png_size(plot_attention(alignment(), tmp_path / "attention.png"))
    assert 300 <= width <= 2500 and 300 <= height <= 2500
    svg = plot_attention(alignment(), tmp_path / "attention.svg").read_text()
    assert ET.fromstring(svg).tag.endswith("svg")
    for layer in range(2):
        for head in range(3):
            assert f"layer {layer}, head {head}" in svg


def test_layer_and_head_pick_one_row_column_or_map(tmp_path):
    svg = plot_attention(alignment(), tmp_path / "a.svg", layer=1).read_text()
    assert "layer 1, head 2" in svg and "layer 0," not in svg
    svg = plot_attention(alignment(), tmp_path / "a.svg", head=2).read_text()
    assert "layer 0, head 2" in svg and "layer 1, head 2" in svg and "head 0" not in svg
    svg = plot_attention(alignment(), tmp_path / "a.svg", layer=0, head=1).read_text()
    assert "layer 0, head 1" in svg and "layer 1" not in svg and "head 0" not in svg


@pytest.mark.parametrize(
    "option, problem",
    [
        ({"layer": 2}, "--layer 2 is out of range.*0 to 1"),
        ({"head": -1}, "--head -1 is out of range.*0 to 2"),
    ],
)
def test_layer_or_head_out_of_range_is_an_error(tmp_path, option, problem):
    with pytest.raises(DragomanError, match=problem):
        plot_attention(alignment(), tmp_path / "a.png", **option)
    assert not (tmp_path / "a.png").exists()


def test_a_single_rnn_map_and_a_bad_suffix(tmp_path):
    svg = plot_attention(alignment(1, 1), tmp_path / "a.svg").read_text()
    assert "layer 0" not in svg  # one map: no layer/head titles
    with pytest.raises(DragomanError, match=r"\.png or \.svg"):
        plot_attention(alignment(), tmp_path / "a.pdf")


def test_a_long_sentence_keeps_the_figure_size_capped(tmp_path):
    long = alignment(1, 2, " ".join(f"w{i}" for i in range(50)), " ".join(f"v{i}" for i in range(70)))
    width, height = png_size(plot_attention(long, tmp_path / "long.png"))
    assert width <= 2500 and height <= 2500


def test_no_attention_is_an_error(tmp_path):
    none = Alignment(Translation("x", 0.0), ["a"], ["x", "</s>"], None)
    with pytest.raises(DragomanError, match="no attention"):
        plot_attention(none, tmp_path / "a.png")


# ---------------------------------------------------------------- the CLI on tiny trained models


def plots_config(data: dict, model_dir: Path, model: dict, max_steps: int) -> dict:
    model = {"enc_layers": 1, "dec_layers": 1, **model}
    train = {"max_steps": max_steps, "validate_every": 10, "log_every": 5, "dev_sentences": 10}
    return tiny_config(data, model_dir, model, **train)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_copy_task(tmp_path_factory.mktemp("plots") / "data", n_train=200, n_dev=20)


@pytest.fixture(scope="module")
def transformer_dir(data, tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("transformer") / "model"
    model = {"encoder": "transformer", "decoder": "transformer", "heads": 2, "ff": 64}
    return train(parse_config(plots_config(data, model_dir, model, max_steps=20)))


def test_cli_plot_writes_training_png(transformer_dir, capsys):
    assert main(["plot", str(transformer_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(transformer_dir / "training.png")
    png_size(transformer_dir / "training.png")


def test_cli_attention_on_a_trained_transformer(transformer_dir, tmp_path, capsys):
    out = tmp_path / "attention.svg"
    assert main(["attention", str(transformer_dir), "a b c", "-o", str(out)]) == 0
    translation, path = capsys.readouterr().out.splitlines()
    assert path == str(out)
    svg = out.read_text()
    assert "layer 0, head 0" in svg and "layer 0, head 1" in svg and "layer 1" not in svg
    assert main(["attention", str(transformer_dir), "a b c"]) == 0  # default: MODEL_DIR/attention.png
    png_size(transformer_dir / "attention.png")
    assert main(["attention", str(transformer_dir), "a b c", "--head", "2"]) == 2  # only heads 0 and 1
    assert "--head 2 is out of range" in capsys.readouterr().err


def test_cli_attention_without_attention_exits_with_an_error(data, tmp_path, capsys):
    model = {"encoder": "lstm", "decoder": "lstm", "hidden": 16, "attention": "none", "bridge": "project"}
    model_dir = train(parse_config(plots_config(data, tmp_path / "model", model, max_steps=2)))
    capsys.readouterr()
    assert main(["attention", str(model_dir), "a b c", "-o", str(tmp_path / "a.png")]) == 2
    assert "no attention to draw" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()


def test_cli_attention_on_an_rnn_draws_one_map(data, tmp_path):
    model = {"encoder": "gru", "decoder": "gru", "hidden": 16, "attention": "bahdanau"}
    model_dir = train(parse_config(plots_config(data, tmp_path / "model", model, max_steps=2)))
    out = tmp_path / "attention.svg"
    assert main(["attention", str(model_dir), "a b c", "-o", str(out)]) == 0
    svg = out.read_text()
    assert ET.fromstring(svg).tag.endswith("svg")
    assert "attention weight" in svg and "layer 0" not in svg  # one map, no layer/head titles
