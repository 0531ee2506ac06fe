"""Beyond translation: the encoder-only classifier (task: classify) and the decoder-only language
model (task: lm) train with the same loop, decode with the same search, and are built from the same
layer classes as the encoder-decoder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dragoman.classify import TextClassifier
from dragoman.cli import main
from dragoman.config import ModelConfig, parse_config
from dragoman.data.prepare import load_batches, prepare
from dragoman.errors import DragomanError
from dragoman.metrics import classification_scores, confusion_matrix
from dragoman.models import build_model
from dragoman.models.classifier import EncoderClassifier
from dragoman.models.lm import LanguageModel
from dragoman.models.transformer import EncoderLayer, Transformer, TransformerEncoder
from dragoman.train import train
from dragoman.translator import Translator
from tests.conftest import tiny_config

LABEL = {"a": "positive", "b": "negative", "c": "neutral"}


def write_labelled(directory: Path, n_train: int = 1200, seed: int = 0) -> None:
    """Texts of 3-5 letters whose most frequent letter (a, b or c, three times) decides the label;
    {split}.txt / {split}.label and the same as {split}.csv (text,label)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", 150), ("test", 150)):
        rows = []
        for _ in range(n):
            key = rng.choice("abc")
            words = [key] * 3 + [rng.choice("defgh") for _ in range(rng.randint(0, 2))]
            rng.shuffle(words)
            rows.append((" ".join(words), LABEL[key]))
        (directory / f"{split}.txt").write_text("".join(t + "\n" for t, _ in rows))
        (directory / f"{split}.label").write_text("".join(label + "\n" for _, label in rows))
        csv_rows = [f'"{t}",{label}' for t, label in rows]
        (directory / f"{split}.csv").write_text(
            "id,text,label\n".replace("id,", "") + "\n".join(csv_rows) + "\n"
        )


def classify_config(tmp_path: Path, csv: bool = False, **train) -> dict:
    d = tmp_path / "data"
    write_labelled(d)
    if csv:
        data = {"format": "csv", **{s: str(d / f"{s}.csv") for s in ("train", "dev", "test")}}
    else:
        data = {"src": "txt", "tgt": "label", **{s: str(d / s) for s in ("train", "dev", "test")}}
    data |= {"max_len": 16, "tokenizer": {"kind": "word", "vocab_size": 32}}
    settings = {"max_steps": 120, "validate_every": 60, **train}
    return {
        "task": "classify",
        **tiny_config(data, tmp_path / "model", {"enc_layers": 2, "ff": 64}, **settings),
    }


def write_pattern(directory: Path, n: int = 600, seed: int = 0) -> dict:
    """Lines of 8 letters cycling through a b c d from a random start: after the first letter
    every token (EOS included) is certain, so the best perplexity is 4 ** (1/9) ≈ 1.17."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("dev", 100)):
        lines = [
            " ".join("abcd"[(k + i) % 4] for i in range(8)) for k in (rng.randrange(4) for _ in range(count))
        ]
        (directory / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
    return {
        "src": "txt",
        "train": str(directory / "train"),
        "dev": str(directory / "dev"),
        "max_len": 16,
        "tokenizer": {"kind": "word", "vocab_size": 32},
    }


def lm_config(tmp_path: Path, **train) -> dict:
    data = write_pattern(tmp_path / "data")
    settings = {"max_steps": 150, "validate_every": 75, **train}
    config = tiny_config(data, tmp_path / "lm", {"dec_layers": 2, "ff": 64}, **settings)
    config["decode"] = {"max_len_a": 0.0, "max_len_b": 8}
    return {"task": "lm", **config}


# --- metrics, computed by hand ---------------------------------------------------------------


def test_accuracy_and_macro_f1_match_a_hand_computation():
    gold = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 2]
    # class 0: tp 2, gold 3, predicted 2 → F1 = 2·2 / (3 + 2) = 0.8
    # class 1: tp 1, gold 2, predicted 2 → F1 = 2·1 / (2 + 2) = 0.5
    # class 2: tp 1, gold 1, predicted 2 → F1 = 2·1 / (1 + 2) = 2/3
    scores = classification_scores(gold, predicted, 3)
    assert scores["accuracy"] == pytest.approx(100 * 4 / 6)
    assert scores["f1"] == pytest.approx(100 * (0.8 + 0.5 + 2 / 3) / 3)
    assert confusion_matrix(gold, predicted, 3) == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_macro_f1_counts_a_never_predicted_class_as_zero_and_skips_absent_ones():
    # always class 0 on gold [0, 0, 1]; class 2 appears nowhere: F1(0) = 2·2/(2+3) = 0.8, F1(1) = 0
    assert classification_scores([0, 0, 1], [0, 0, 0], 3)["f1"] == pytest.approx(100 * 0.8 / 2)


# --- one definition of each block ------------------------------------------------------------


def test_all_three_families_are_built_from_the_same_layer_classes():
    config = ModelConfig(d_model=32, heads=4, ff=64, enc_layers=2, dec_layers=2)
    seq2seq = build_model(config, 40, 40)
    classifier = build_model(config, 40, 3, task="classify")
    lm = build_model(config, 40, 40, task="lm")
    assert isinstance(seq2seq, Transformer) and isinstance(classifier, EncoderClassifier)
    assert isinstance(lm, LanguageModel)
    assert type(classifier.encoder) is type(seq2seq.encoder) is TransformerEncoder
    assert (
        {type(layer) for layer in lm.layers}
        == {type(layer) for layer in seq2seq.encoder.layers}
        == {EncoderLayer}
    )
    # the classifier takes any encoder of the encoder-decoders
    for encoder in ("lstm", "gru", "cnn"):
        model = build_model(
            ModelConfig(encoder=encoder, decoder="lstm", d_model=32, hidden=16), 40, 3, "classify"
        )
        assert model(torch.randint(4, 40, (2, 5))).shape == (2, 3)


def test_the_cached_steps_of_the_language_model_equal_the_full_recomputation():
    torch.manual_seed(0)
    lm = LanguageModel(30, dim=32, heads=4, ff=64, layers=2, dropout=0.0).eval()
    ids = torch.randint(4, 30, (3, 10))
    full = lm(ids)  # (3, 10, V)
    state, token = lm.prefill(ids[:, :4])
    assert torch.equal(token, ids[:, 3])
    steps = []
    for t in range(3, 9):
        logits, state = lm.step(token, state)
        steps.append(logits)
        token = ids[:, t + 1]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 3:9], atol=1e-5, rtol=1e-4)


def test_classifier_pooling_ignores_padding_and_first_reads_the_bos_position():
    torch.manual_seed(0)
    for pooling in ("mean", "first"):
        model = build_model(
            ModelConfig(d_model=32, heads=4, ff=64, pooling=pooling, dropout=0.0), 30, 3, "classify"
        )
        model.eval()
        alone = model(torch.tensor([[5, 6, 7]]))
        padded = model(torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]]))[:1]
        torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)


# --- classify: train, predict, evaluate, errors ----------------------------------------------


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("classify")
    return train(parse_config(classify_config(tmp)))


def test_a_classifier_learns_a_separable_toy_task(classifier_dir):
    rows = [json.loads(r) for r in (classifier_dir / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [60, 120]
    assert {"loss", "accuracy", "f1"} <= set(valid[-1]) and "bleu" not in valid[-1]
    assert valid[-1]["accuracy"] >= 95.0, valid[-1]
    assert json.loads((classifier_dir / "labels.json").read_text())["labels"] == [
        "negative",
        "neutral",
        "positive",
    ]
    data = Path(parse_config(yaml_of(classifier_dir)).data.test)
    texts, gold = (data.with_suffix(s).read_text().splitlines() for s in (".txt", ".label"))
    evaluation = TextClassifier.load(classifier_dir).evaluate(texts, gold)
    assert evaluation.accuracy >= 95.0 and evaluation.f1 >= 95.0
    assert evaluation.majority_accuracy < 50.0  # three balanced classes
    assert sum(map(sum, evaluation.confusion)) == len(gold)
    assert "confusion matrix" in evaluation.report()


def yaml_of(model_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((model_dir / "config.yaml").read_text())


def test_classify_predictions_and_probabilities(classifier_dir):
    classifier = TextClassifier.load(classifier_dir)
    predictions = classifier.classify(["a a a", "d b b e b", "c c c", ""])
    assert [p.label for p in predictions[:3]] == ["positive", "negative", "neutral"]
    for p in predictions:
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.probability == max(p.probabilities.values())


def test_classify_cli_prints_label_and_probability(classifier_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a a a\nc d c c\n")
    assert main(["classify", str(classifier_dir), "-i", str(tmp_path / "in.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["positive", "neutral"]
    assert all(0.5 < float(line.split("\t")[1]) <= 1.0 for line in lines)
    assert main(["classify", str(classifier_dir), "--all", "-i", str(tmp_path / "in.txt")]) == 0
    first = capsys.readouterr().out.splitlines()[0].split("\t")
    assert first[0::2] == ["negative", "neutral", "positive"]


def test_an_unknown_label_at_evaluation_names_the_file_and_line(classifier_dir):
    classifier = TextClassifier.load(classifier_dir)
    with pytest.raises(
        DragomanError, match=r"gold.txt:2: unknown label 'Positive'.*negative, neutral, positive"
    ):
        classifier.evaluate(["a a a", "a a a"], ["positive", "Positive"], source="gold.txt")


def test_an_unknown_label_in_the_dev_file_stops_prepare_with_its_line(tmp_path):
    config = classify_config(tmp_path)
    dev_labels = Path(config["data"]["dev"] + ".label")
    lines = dev_labels.read_text().splitlines()
    lines[4] = "sarcastic"
    dev_labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DragomanError, match=r"dev.label:5: unknown label 'sarcastic'"):
        prepare(parse_config(config))


def test_a_csv_classifier_trains_the_same_and_a_missing_column_is_named(tmp_path):
    config = classify_config(tmp_path, csv=True, max_steps=60, validate_every=60)
    model_dir = train(parse_config(config))
    assert TextClassifier.load(model_dir).classify(["b b b"])[0].label == "negative"
    config["data"]["label_column"] = "sentiment"
    config["train"]["model_dir"] = str(tmp_path / "other")
    with pytest.raises(
        DragomanError, match=r"train.csv:1: no column 'sentiment'; the header has 'text', 'label'"
    ):
        prepare(parse_config(config))


def test_classifier_csv_rows_count_empty_texts_and_truncate_long_ones(tmp_path):
    config = classify_config(tmp_path, csv=True)
    train_csv = Path(config["data"]["train"])
    train_csv.write_text(train_csv.read_text() + '"",positive\n"' + " ".join(["a"] * 20) + '",positive\n')
    config["data"]["too_long"] = "truncate"
    report = prepare(parse_config(config))["train"]
    assert (report.empty, report.too_long, report.kept) == (1, 1, 1201)
    batches = load_batches(parse_config(config), "train", 10_000)
    assert batches.lengths.max() == 17  # 16 tokens + the classifier's BOS


def test_translate_refuses_a_classifier_and_classify_refuses_a_translator(classifier_dir, tmp_path, capsys):
    assert main(["translate", str(classifier_dir)]) == 2
    assert "use `dragoman classify MODEL_DIR`" in capsys.readouterr().err


# --- lm: train, generate with every search, block mode, errors --------------------------------


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return train(parse_config(lm_config(tmp_path_factory.mktemp("lm"))))


def test_a_language_model_learns_a_repeating_pattern_to_low_perplexity(lm_dir):
    rows = [json.loads(r) for r in (lm_dir / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["kind"] == "valid"]
    assert valid[-1]["ppl"] < 1.3, valid[-1]  # optimum 1.17; a uniform guess over 4 letters is 4
    assert "bleu" not in valid[-1]


def test_generate_continues_the_prompt_with_greedy_beam_and_sampling(lm_dir, capsys):
    generator = Translator.load(lm_dir)
    assert generator.translate(["b c", "d"]) == ["b c d a b c d a", "d a b c d a b c"]
    assert generator.translate(["b c"], beam=4) == ["b c d a b c d a"]
    sampled = generator.translate(["a"] * 3, sampling=True, temperature=0.5, seed=3)
    assert all(s.startswith("a b c d") for s in sampled)
    assert generator.translate(["a"] * 3, sampling=True, temperature=0.5, seed=3) == sampled
    # an empty prompt starts from <s>: any of the four cyclic lines
    assert generator.translate([""])[0] in {" ".join("abcd"[(k + i) % 4] for i in range(8)) for k in range(4)}
    assert main(["generate", str(lm_dir), "--prompt", "c", "--max-tokens", "3"]) == 0
    assert capsys.readouterr().out == "c d a b\n"


def test_generate_batches_prompts_of_different_lengths_like_one_at_a_time(lm_dir):
    generator = Translator.load(lm_dir)
    prompts = ["a", "b c d", "c", "d a", "a b c d a"]
    assert generator.translate(prompts, beam=3) == [generator.translate([p], beam=3)[0] for p in prompts]


def test_generate_refuses_a_model_that_is_not_a_language_model(classifier_dir, capsys):
    assert main(["generate", str(classifier_dir), "--prompt", "a"]) == 2
    assert "this is a classifier (task: classify)" in capsys.readouterr().err


def test_block_mode_joins_documents_into_overlapping_blocks(tmp_path):
    (tmp_path / "train.txt").write_text("a b c\n\nd e\nf\n")
    config = lm_config(tmp_path)
    config["data"] = {
        "src": "txt",
        "train": str(tmp_path / "train"),
        "block_size": 4,
        "tokenizer": {"kind": "word", "vocab_size": 16},
    }
    config = parse_config(config)
    report = prepare(config)["train"]
    assert (report.read, report.empty, report.kept, report.blocks) == (4, 1, 3, 3)
    assert report.describe("train", config).endswith("3 kept, joined and cut into 3 blocks of 4 tokens")
    batches = load_batches(config, "train", 1000)
    # stream: <s> a b c </s> <s> d e </s> <s> f </s>  (12 tokens) → blocks of 5 overlapping by one
    from dragoman.data.prepare import load_tokenizers

    tok, _ = load_tokenizers(Path(config.train.model_dir), config)
    blocks = [tok.pieces(batches.text[i]) for i in range(len(batches))]
    assert blocks == [
        ["<s>", "a", "b", "c", "</s>"],
        ["</s>", "<s>", "d", "e", "</s>"],
        ["</s>", "<s>", "f", "</s>"],
    ]
    batch = batches.collate(np.arange(len(batches)))
    assert batch.src is None
    assert tok.pieces(batch.tgt_in[0].tolist()) == ["<s>", "a", "b", "c"]
    assert tok.pieces(batch.tgt_out[0].tolist()) == ["a", "b", "c", "</s>"]


def test_config_checks_what_each_task_needs():
    base = {"train": {"model_dir": "m", "max_steps": 1}}
    problems = {
        "data.tgt: a language model reads one side only": {
            "task": "lm",
            "data": {"src": "a", "tgt": "b", "train": "x"},
        },
        "data.format: csv is for task: classify": {"data": {"format": "csv", "train": "x.csv"}},
        "data.block_size is for task: lm": {"data": {"src": "a", "tgt": "b", "train": "x", "block_size": 8}},
        "data.tgt: required key is missing (the suffix of the label files)": {
            "task": "classify",
            "data": {"src": "a", "train": "x"},
        },
        "accuracy is not measured for task: lm": {
            "task": "lm",
            "data": {"src": "a", "train": "x"},
            "train": {**base["train"], "early_stopping": {"metric": "accuracy"}},
        },
    }
    for message, raw in problems.items():
        with pytest.raises(DragomanError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_config({**base, **raw})


def test_perplexity_of_a_file_equals_the_validation_perplexity(lm_dir):
    rows = [json.loads(r) for r in (lm_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "valid"][-1]
    dev = Path(yaml_of(lm_dir)["data"]["dev"] + ".txt").read_text().splitlines()
    ppl, tokens = Translator.load(lm_dir, checkpoint="last").perplexity(dev)
    assert tokens == 9 * len(dev)  # 8 letters and </s> per line
    assert ppl == pytest.approx(last["ppl"], rel=1e-4)


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_a_resumed_run_has_the_losses_of_an_uninterrupted_one(task, tmp_path):
    make = classify_config if task == "classify" else lm_config
    losses = {}
    for name, stops in (("whole", [30]), ("resumed", [15, 30])):
        for i, steps in enumerate(stops):
            config = make(tmp_path / name, max_steps=steps, validate_every=15, log_every=1)
            train(parse_config(config), resume=i > 0)
        rows = (tmp_path / name / Path(config["train"]["model_dir"]).name / "metrics.jsonl").read_text()
        losses[name] = {
            r["step"]: r["loss"] for r in map(json.loads, rows.splitlines()) if r["kind"] == "train"
        }
    assert sorted(losses["resumed"]) == list(range(1, 31))
    assert losses["resumed"] == pytest.approx(losses["whole"], rel=1e-5, abs=1e-6)


def test_evaluate_a_classifier_from_labels_or_csv_and_name_an_unknown_label(classifier_dir, tmp_path, capsys):
    data = Path(yaml_of(classifier_dir)["data"]["test"])
    args = ["evaluate", str(classifier_dir), "--src", str(data.with_suffix(".txt"))]
    assert main([*args, "--ref", str(data.with_suffix(".label"))]) == 0
    from_files = capsys.readouterr().out
    assert main(["evaluate", str(classifier_dir), "--src", str(data.with_suffix(".csv"))]) == 0
    assert capsys.readouterr().out == from_files
    accuracy = float(from_files.split()[1])
    assert accuracy >= 95.0 and "majority baseline" in from_files and "confusion matrix" in from_files
    rows = from_files.splitlines()[-3:]
    assert [row.split()[0] for row in rows] == ["negative", "neutral", "positive"]
    assert sum(int(n) for row in rows for n in row.split()[1:]) == 150
    bad = tmp_path / "bad.label"
    bad.write_text("positive\n" * 149 + "great\n")
    assert main([*args, "--ref", str(bad)]) == 2
    assert "bad.label:150: unknown label 'great'" in capsys.readouterr().err


def test_evaluate_a_language_model_gives_its_perplexity(lm_dir, capsys):
    dev = yaml_of(lm_dir)["data"]["dev"] + ".txt"
    assert main(["evaluate", str(lm_dir), "--src", dev]) == 0
    ppl, tokens = Translator.load(lm_dir).perplexity(Path(dev).read_text().splitlines())
    assert capsys.readouterr().out == f"perplexity {ppl:.2f} ({tokens} tokens, </s> included)\n"
