"""`dragoman export --to ctranslate2`: the exported model decodes as dragoman does.

Four tiny Transformers trained on the reversal task cover every pair of the choices the export
must map (pre/post norm × sinusoidal/learned positions × shared/separate embeddings), with word,
char and BPE tokenizers between them. Greedy outputs must be token-identical and per-token
log-probabilities equal up to float error; beam search is CTranslate2's own and need only agree
on most sentences.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import write_copy_task
from dragoman import search
from dragoman.cli import main
from dragoman.config import parse_config
from dragoman.data.batches import pad
from dragoman.data.text import read_lines
from dragoman.data.tokenizers import BOS, EOS
from dragoman.errors import DragomanError
from dragoman.export import CTranslate2Translator, export_ctranslate2
from dragoman.train import train
from dragoman.translator import Translator

ctranslate2 = pytest.importorskip("ctranslate2")

# Each pair of (norm, positions, embeddings) appears once: an orthogonal array over the choices.
VARIANTS = {
    "pre-sinusoidal-shared": ({"norm": "pre", "positions": "sinusoidal"}, {}),
    "pre-learned-separate": (
        {"norm": "pre", "positions": "learned"},
        {"joint_vocab": False, "tgt_tokenizer": {"kind": "char", "vocab_size": 32}},
    ),
    "post-sinusoidal-separate": (
        {"norm": "post", "positions": "sinusoidal", "share_embeddings": False, "tie_output": False},
        {},
    ),
    "post-learned-shared": (
        {"norm": "post", "positions": "learned"},
        {"tokenizer": {"kind": "bpe", "vocab_size": 300}},
    ),
}


def tiny_config(data: dict, model_dir: Path, model: dict | None = None) -> dict:
    return {
        "data": data,
        "model": {
            "d_model": 32,
            "heads": 2,
            "ff": 64,
            "enc_layers": 2,
            "dec_layers": 2,
            "dropout": 0.0,
            "max_positions": 64,
            **(model or {}),
        },
        "train": {
            "model_dir": str(model_dir),
            "batch_tokens": 512,
            "max_steps": 150,
            "validate_every": 150,
            "dev_sentences": 10,
            "threads": 1,
            "label_smoothing": 0.0,
            "optimizer": {"lr": 0.005},
            "schedule": {"name": "inverse_sqrt", "warmup": 50},
        },
        "decode": {"max_len_a": 2.0, "max_len_b": 3},
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_copy_task(tmp_path_factory.mktemp("export") / "data", n_train=1000, n_dev=100)


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, data, tmp_path_factory) -> SimpleNamespace:
    """A trained tiny Transformer, its float32 export, and a translator for each."""
    model, data_overrides = VARIANTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model_dir = train(parse_config(tiny_config({**data, **data_overrides}, root / "model", model)))
    out = export_ctranslate2(model_dir, root / "ct2")
    return SimpleNamespace(
        model_dir=model_dir,
        out=out,
        dragoman=Translator.load(model_dir),
        ct2=CTranslate2Translator.load(out, intra_threads=1),
        sources=read_lines(Path(data["test"] + ".src")),
    )


def greedy_ids(translator: Translator, ids: list[list[int]], a: float, b: int) -> list[list[int]]:
    """dragoman's greedy search over all inputs in one padded batch, ≤ a × length + b tokens each."""
    model = translator.model
    max_len = (torch.tensor([len(seq) for seq in ids]) * a + b).long().clamp(max=model.max_positions - 1)
    with torch.inference_mode():
        state = model.init_state(model.encode(pad([np.asarray(seq) for seq in ids])))
        return search.greedy(model, state, max_len).best()


@pytest.mark.parametrize("a, b", [(2.0, 3), (0.5, 1)])  # the config's limits; limits that cut most
def test_greedy_outputs_are_token_identical(exported, a, b):
    ids = exported.dragoman.src_tok.encode_batch(exported.sources)
    ours = greedy_ids(exported.dragoman, ids, a, b)
    assert exported.ct2.translate_ids(ids, beam=1, max_len_a=a, max_len_b=b) == ours
    texts = exported.dragoman.translate(exported.sources, beam=1, max_len_a=a, max_len_b=b)
    assert exported.ct2.translate(exported.sources, beam=1, max_len_a=a, max_len_b=b) == texts
    assert len(set(texts)) > len(texts) // 2 and all(texts)  # a trained model: the test means something


def test_log_probabilities_match_teacher_forcing(exported):
    """Every weight, norm, position and scale in the right place: scores agree to float error."""
    src_tok, tgt_tok = exported.dragoman.src_tok, exported.dragoman.tgt_tok
    sources = exported.sources[:20]
    targets = [" ".join(s.split()[::-1]) for s in sources]  # the references: not what either decodes
    results = exported.ct2.translator.score_batch(
        [src_tok.pieces(src_tok.encode(s)) for s in sources],
        [tgt_tok.pieces(tgt_tok.encode(t)) for t in targets],
    )
    model = exported.dragoman.model
    for source, target, result in zip(sources, targets, results):
        tgt = torch.tensor([[BOS, *tgt_tok.encode(target), EOS]])
        with torch.inference_mode():
            logits = model(torch.tensor([src_tok.encode(source)]), tgt[:, :-1])
        ours = logits.log_softmax(dim=-1)[0].gather(1, tgt[0, 1:, None])[:, 0]
        assert np.allclose(result.log_probs, ours.numpy(), atol=1e-4)


@pytest.mark.parametrize("alpha, share", [(0.0, 0.9), (1.0, 0.75)])
def test_beam_search_agrees_on_most_sentences(exported, alpha, share):
    """Raw log-probabilities (alpha 0) rank alike; with a length penalty the formulas differ:
    CTranslate2 divides by length**alpha, dragoman by GNMT's ((5 + length) / 6)**alpha."""
    ours = exported.dragoman.translate(exported.sources, beam=4, length_penalty=alpha)
    theirs = exported.ct2.translate(exported.sources, beam=4, length_penalty=alpha)
    assert sum(a == b for a, b in zip(ours, theirs)) >= share * len(ours)


def test_int8_export_through_the_cli_loads_and_translates(exported, tmp_path):
    out = tmp_path / "int8"
    args = ["export", str(exported.model_dir), "--to", "ctranslate2", str(out), "--quantization", "int8"]
    assert main(args) == 0
    assert (out / "model.bin").stat().st_size < (exported.out / "model.bin").stat().st_size
    int8 = CTranslate2Translator.load(out, intra_threads=1).translate(exported.sources)
    reference = exported.ct2.translate(exported.sources)
    assert len(int8) == len(reference) and all(int8)
    assert sum(a == b for a, b in zip(int8, reference)) >= 0.7 * len(reference)


def test_export_is_self_contained_and_replaces_only_an_export(exported, tmp_path):
    files = {p.name for p in exported.out.iterdir()}
    assert {"model.bin", "config.json", "config.yaml"} <= files
    assert any(name.endswith("tokenizer.json") for name in files)
    copy = tmp_path / "copy"
    export_ctranslate2(exported.model_dir, copy)
    export_ctranslate2(exported.model_dir, copy)  # again, over the earlier export
    assert CTranslate2Translator.load(copy, intra_threads=1).translate(
        exported.sources[:5]
    ) == exported.ct2.translate(exported.sources[:5])
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DragomanError, match="not a CTranslate2 export"):
        export_ctranslate2(exported.model_dir, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_recurrent_model_is_refused_with_exit_code_2(data, tmp_path, capsys):
    config = tiny_config(data, tmp_path / "rnn", {"encoder": "lstm", "decoder": "lstm", "hidden": 16})
    config["train"].update(max_steps=2, validate_every=2)
    model_dir = train(parse_config(config))
    capsys.readouterr()
    assert main(["export", str(model_dir), "--to", "ctranslate2", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "model.encoder: lstm" in error and "model.decoder: lstm" in error
    assert not (tmp_path / "out").exists()


def test_a_missing_model_directory_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    with pytest.raises(DragomanError, match="model directory not found"):
        export_ctranslate2(missing, tmp_path / "out")
    assert main(["export", str(missing), "--to", "ctranslate2", str(tmp_path / "out")]) == 2
    assert f"{missing}: model directory not found" in capsys.readouterr().err


def test_without_ctranslate2_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # makes `import ctranslate2` fail
    with pytest.raises(DragomanError, match=r'pip install "dragoman\[export\]"'):
        export_ctranslate2(tmp_path, tmp_path / "out")
