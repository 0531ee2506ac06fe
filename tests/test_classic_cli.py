"""Classic (recurrent) models end to end: `dragoman train` and `dragoman translate` against the Python
API and the trained model itself, `--resume`, pretrained word vectors that stay frozen, the L1 penalty."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import tiny_config, write_copy_task
from dragoman.cli import main
from dragoman.config import parse_config
from dragoman.data.text import read_lines
from dragoman.train import Run, train
from dragoman.translator import Translator, load_model

D_MODEL = 32
# An LSTM encoder and decoder with Bahdanau attention, tiny; no dropout, so train and eval mode agree.
MODEL = {
    "encoder": "lstm",
    "decoder": "lstm",
    "attention": "bahdanau",
    "d_model": D_MODEL,
    "hidden": 32,
    "enc_layers": 1,
    "dec_layers": 1,
    "dropout": 0.0,
}


def classic_config(data: dict, model_dir: Path, model: dict | None = None, **train_overrides) -> dict:
    train = {"max_steps": 40, "validate_every": 20, "log_every": 10, "dev_sentences": 10, **train_overrides}
    return tiny_config(data, model_dir, {**MODEL, **(model or {})}, **train)


def write_config(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def metrics(model_dir: Path) -> list[dict]:
    return [json.loads(r) for r in (model_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_copy_task(tmp_path_factory.mktemp("classic") / "data", n_train=400, n_dev=30)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> SimpleNamespace:
    """`dragoman train` on an LSTM + Bahdanau config, keeping hold of the run it trained."""
    root = tmp_path_factory.mktemp("trained")
    config = write_config(root / "config.yaml", classic_config(data, root / "model"))
    runs, start = [], Run.start.__func__

    def spy(cls, config, resume):
        runs.append(start(cls, config, resume))
        return runs[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Run, "start", classmethod(spy))
        assert main(["train", config]) == 0
    return SimpleNamespace(model_dir=root / "model", run=runs[0])


def test_cli_api_and_the_trained_model_translate_alike(trained, data, tmp_path):
    sources_path = data["test"] + ".src"
    sources = read_lines(Path(sources_path))
    for beam in ("1", "3"):
        out = tmp_path / f"beam{beam}.txt"
        args = ["translate", str(trained.model_dir), "-i", sources_path, "-o", str(out), "--beam", beam]
        assert main(args) == 0
        cli = out.read_text().splitlines()
        api = Translator.load(trained.model_dir).translate(sources, beam=int(beam))
        again = Translator.load(trained.model_dir).translate(sources, beam=int(beam))
        trained.run.model.eval()
        in_memory = trained.run.translator.translate(sources, beam=int(beam))
        assert cli == api == again == in_memory
        assert len(set(api)) > 5  # not one output for everything: the comparison means something


def test_saved_weights_are_the_trained_ones(trained):
    trained_state = trained.run.model.state_dict()
    for checkpoint in ("best", "last"):  # one validation improves at the last step: best = last
        loaded = load_model(trained.model_dir, checkpoint)[0].state_dict()
        assert loaded.keys() == trained_state.keys()
        assert all(torch.equal(loaded[k], trained_state[k]) for k in loaded)


def test_resume_continues_from_the_checkpoint(trained, data, tmp_path, caplog):
    model_dir = tmp_path / "model"
    shutil.copytree(trained.model_dir, model_dir)
    config = write_config(tmp_path / "more.yaml", classic_config(data, model_dir, max_steps=60))
    with caplog.at_level(logging.INFO, logger="dragoman"):
        assert main(["train", config, "--resume"]) == 0
    assert "resumed from step 40" in caplog.text
    rows = metrics(model_dir)
    assert [r["step"] for r in rows if r["kind"] == "train"] == [10, 20, 30, 40, 50, 60]
    assert [r["step"] for r in rows if r["kind"] == "valid"] == [20, 40, 60]
    assert rows[:6] == metrics(trained.model_dir)  # what came before is kept as it was
    assert json.loads((model_dir / "last.json").read_text())["step"] == 60


def vector(word_index: int) -> list[float]:
    """Halves and small integers: exact in float32."""
    return [float((3 * i + word_index) % 9 - 4) / 2 for i in range(D_MODEL)]


def write_word2vec(path: Path, words: dict[str, list[float]]) -> Path:
    dim = len(next(iter(words.values())))
    lines = [f"{len(words)} {dim}\n"] + [f"{w} {' '.join(map(str, v))}\n" for w, v in words.items()]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_frozen_pretrained_vectors_survive_training_and_resume(data, tmp_path):
    pytest.importorskip("gensim")
    words = {w: vector(i) for i, w in enumerate("a b c zebra".split())}  # "zebra" is not in the vocabulary
    vectors = {"path": str(write_word2vec(tmp_path / "vectors.txt", words)), "freeze": True}
    raw = classic_config(
        {**data, "joint_vocab": False},
        tmp_path / "model",
        {"src_vectors": {**vectors, "format": "word2vec"}},
        max_steps=10,
        validate_every=10,
        log_every=2,
        l1=1e-4,  # neither the L1 penalty nor weight decay may move frozen rows
        optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0.01},
    )
    config = write_config(tmp_path / "config.yaml", raw)

    def check_rows() -> None:
        for checkpoint in ("best", "last"):
            model, _, src_tok, _ = load_model(tmp_path / "model", checkpoint)
            embed = model.src_embed
            assert embed is not model.tgt_embed
            for word in "abc":
                (row,) = src_tok.encode(word)
                assert torch.equal(embed.weight[row], torch.tensor(words[word]) / math.sqrt(D_MODEL))
                assert torch.allclose(embed(torch.tensor([row]))[0], torch.tensor(words[word]))

    assert main(["train", config]) == 0
    check_rows()
    raw["train"]["max_steps"] = 16
    assert main(["train", write_config(tmp_path / "config.yaml", raw), "--resume"]) == 0
    check_rows()
    losses = {r["step"]: r["loss"] for r in metrics(tmp_path / "model") if r["kind"] == "train"}
    assert sorted(losses) == list(range(2, 17, 2)) and all(map(math.isfinite, losses.values()))


def test_vectors_of_the_wrong_dimension_are_a_one_line_error(data, tmp_path, capsys):
    pytest.importorskip("gensim")
    path = write_word2vec(tmp_path / "small.vec", {"a": [1.0] * 8, "b": [2.0] * 8})
    raw = classic_config(
        {**data, "joint_vocab": False}, tmp_path / "model", {"src_vectors": {"path": str(path)}}
    )
    assert main(["train", write_config(tmp_path / "config.yaml", raw)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("dragoman: error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert str(path) in errors[0] and "model.src_vectors" in errors[0]
    assert "8 dimensions" in errors[0] and "model.d_model: 8" in errors[0]


def weight_sum(model_dir: Path) -> float:
    """Σ|w| over the weight matrices: what the L1 penalty pulls down."""
    model = load_model(model_dir)[0]
    return sum(p.abs().sum().item() for p in model.parameters() if p.dim() > 1)


def test_l1_penalty_trains_and_shrinks_the_weights(data, tmp_path):
    runs = {}
    for l1 in (0.0, 0.01):
        raw = classic_config(data, tmp_path / f"l1-{l1}", max_steps=10, validate_every=10, log_every=1, l1=l1)
        runs[l1] = train(parse_config(raw))
    plain, penalised = (
        {r["step"]: r["loss"] for r in metrics(runs[l1]) if r["kind"] == "train"} for l1 in (0.0, 0.01)
    )
    assert all(math.isfinite(v) for v in penalised.values())
    assert plain[1] == pytest.approx(penalised[1])  # same start: the logged loss excludes the penalty
    assert plain[10] != pytest.approx(penalised[10])
    assert weight_sum(runs[0.01]) < 0.5 * weight_sum(runs[0.0])
