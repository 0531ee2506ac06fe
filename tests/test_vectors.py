"""Pretrained vectors: lookup and coverage, exact copies, PAD, formats, errors, freezing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dragoman.config import VectorsConfig
from dragoman.data.tokenizers import SPECIALS
from dragoman.errors import DragomanError
from dragoman.models.layers import TokenEmbedding
from dragoman.models.vectors import Coverage, load_vectors

DIM = 4
# Small integers and halves: exact in float32, so copies can be compared with torch.equal.
WORDS = {
    "the": [1.0, 2.0, 3.0, 4.0],
    "cat": [-1.0, 0.5, 2.5, 8.0],
    "dog": [6.0, -6.0, 0.0, 1.5],
    "<s>": [9.0, 9.0, 9.0, 9.0],  # a special's name: must never be looked up
    "unused": [7.0, 7.0, 7.0, 7.0],
}
# exact ("cat"), "▁"-stripped ("▁the"), lowercase ("▁Dog"); missing; byte fallback
PIECES = [*SPECIALS, "▁the", "cat", "▁Dog", "▁missing", "<0xE2>"]
FOUND = {4: "the", 5: "cat", 6: "dog"}


def write_vectors(path: Path, fmt: str, words: dict[str, list[float]] = WORDS) -> Path:
    if fmt == "word2vec_binary":
        from gensim.models import KeyedVectors

        vectors = KeyedVectors(len(next(iter(words.values()))))
        vectors.add_vectors(list(words), np.array(list(words.values()), dtype=np.float32))
        vectors.save_word2vec_format(str(path), binary=True)
        return path
    lines = [f"{word} {' '.join(map(str, vector))}\n" for word, vector in words.items()]
    if fmt == "word2vec":
        lines.insert(0, f"{len(words)} {len(next(iter(words.values())))}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def token_embedding() -> TokenEmbedding:
    torch.manual_seed(0)
    return TokenEmbedding(len(PIECES), DIM, pad_id=0)


def test_coverage_counts_exact_stripped_and_lowercase_matches_only(tmp_path, caplog):
    spec = VectorsConfig(path=str(write_vectors(tmp_path / "v.txt", "word2vec")))
    with caplog.at_level("INFO", logger="dragoman"):
        coverage = load_vectors(token_embedding(), PIECES, spec)
    assert coverage == Coverage(found=3, total=5)
    assert str(coverage) == "3 of 5 vocabulary entries (60.0%)"
    assert "model.src_vectors: " in caplog.text and "v.txt covers 3 of 5" in caplog.text


def test_lookup_prefers_exact_then_stripped_then_lowercase(tmp_path):
    words = {
        "▁New": [1.0] * DIM,
        "New": [2.0] * DIM,
        "new": [3.0] * DIM,
        "York": [4.0] * DIM,
        "york": [5.0] * DIM,
    }
    spec = VectorsConfig(path=str(write_vectors(tmp_path / "v.txt", "word2vec", words)))
    embedding = nn.Embedding(len(SPECIALS) + 2, DIM)
    load_vectors(embedding, [*SPECIALS, "▁New", "▁York"], spec)
    assert torch.equal(embedding.weight[4].detach(), torch.tensor(words["▁New"]))
    assert torch.equal(embedding.weight[5].detach(), torch.tensor(words["York"]))


def test_rows_are_the_file_vectors_divided_by_the_scale(tmp_path):
    spec = VectorsConfig(path=str(write_vectors(tmp_path / "v.txt", "word2vec")))
    embedding = token_embedding()
    before = embedding.weight.detach().clone()
    load_vectors(embedding, PIECES, spec)
    for row, word in FOUND.items():
        expected = torch.tensor(WORDS[word]) / embedding.scale
        assert torch.equal(embedding.weight[row].detach(), expected)
        assert torch.equal(embedding(torch.tensor([row]))[0].detach(), torch.tensor(WORDS[word]))
    for row in (1, 2, 3, 7, 8):  # specials and entries not found keep their initialisation
        assert torch.equal(embedding.weight[row].detach(), before[row])


def test_plain_embedding_gets_the_vectors_unscaled(tmp_path):
    spec = VectorsConfig(path=str(write_vectors(tmp_path / "v.txt", "word2vec")))
    embedding = nn.Embedding(len(PIECES), DIM, padding_idx=0)
    load_vectors(embedding, PIECES, spec)
    for row, word in FOUND.items():
        assert torch.equal(embedding.weight[row].detach(), torch.tensor(WORDS[word]))


def test_pad_row_stays_zero(tmp_path):
    words = {"<pad>": [5.0, 5.0, 5.0, 5.0], **WORDS}
    spec = VectorsConfig(path=str(write_vectors(tmp_path / "v.txt", "word2vec", words)))
    embedding = token_embedding()
    load_vectors(embedding, PIECES, spec)
    assert torch.equal(embedding.weight[0].detach(), torch.zeros(DIM))


@pytest.mark.parametrize("fmt", ["word2vec", "word2vec_binary", "glove"])
def test_every_format_loads(tmp_path, fmt):
    spec = VectorsConfig(path=str(write_vectors(tmp_path / "vectors", fmt)), format=fmt)
    embedding = nn.Embedding(len(PIECES), DIM)
    assert load_vectors(embedding, PIECES, spec) == Coverage(found=3, total=5)
    assert torch.equal(embedding.weight[5].detach(), torch.tensor(WORDS["cat"]))


def test_dimension_mismatch_names_the_file_and_the_fix(tmp_path):
    path = write_vectors(tmp_path / "small.txt", "word2vec")
    embedding = nn.Embedding(len(PIECES), 8)
    with pytest.raises(DragomanError) as caught:
        load_vectors(embedding, PIECES, VectorsConfig(path=str(path)), name="model.tgt_vectors")
    message = str(caught.value)
    assert str(path) in message and "model.tgt_vectors" in message
    assert "4 dimensions" in message and "model.d_model: 4" in message


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        (b"hello world this is not vectors\nfoo\n", "word2vec"),
        (b"hello world this is not vectors\nfoo\n", "glove"),
        (b"", "glove"),
        (bytes(range(256)), "word2vec_binary"),
        (b"2 4\nthe 1 2 3 4\n", "glove"),  # a word2vec header read as GloVe
        (b"the 1 2 3 4\ncat 5 6 7 8\n", "word2vec"),  # GloVe read as word2vec: no header
    ],
)
def test_garbage_file_is_a_dragoman_error_naming_it(tmp_path, content, fmt):
    path = tmp_path / "garbage.vec"
    path.write_bytes(content)
    with pytest.raises(DragomanError, match="garbage.vec"):
        load_vectors(nn.Embedding(len(PIECES), DIM), PIECES, VectorsConfig(path=str(path), format=fmt))


def test_binary_file_read_as_text_is_a_dragoman_error(tmp_path):
    path = write_vectors(tmp_path / "vectors.bin", "word2vec_binary")
    with pytest.raises(DragomanError, match="vectors.bin.*not a word2vec vectors file"):
        load_vectors(nn.Embedding(len(PIECES), DIM), PIECES, VectorsConfig(path=str(path)))


def test_missing_file_is_a_dragoman_error_naming_it(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(DragomanError, match="nowhere.txt.*file not found"):
        load_vectors(nn.Embedding(len(PIECES), DIM), PIECES, VectorsConfig(path=str(path)))


def test_missing_gensim_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim.models", None)  # makes the import fail
    path = write_vectors(tmp_path / "v.txt", "word2vec")
    with pytest.raises(DragomanError, match="pip install gensim"):
        load_vectors(nn.Embedding(len(PIECES), DIM), PIECES, VectorsConfig(path=str(path)))


def train_a_few_steps(embedding: nn.Embedding) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(embedding, nn.Linear(DIM, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1)
    ids = torch.arange(len(PIECES))
    labels = torch.randint(0, 3, (len(PIECES),))
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(ids), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_vectors_survive_training_and_unfrozen_ones_move(tmp_path, freeze):
    path = write_vectors(tmp_path / "v.txt", "word2vec")
    embedding = token_embedding()
    load_vectors(embedding, PIECES, VectorsConfig(path=str(path), freeze=freeze))
    loaded = embedding.weight.detach().clone()
    train_a_few_steps(embedding)
    assert embedding.weight.requires_grad is not freeze
    assert torch.equal(embedding.weight.detach(), loaded) is freeze
