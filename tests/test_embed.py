"""Sentence embeddings and semantic search: vectors against hand-pooled `model.encode` output for a
Transformer, an LSTM and a cnn encoder (tiny models trained here), top-k against brute force, the
index cache, and `dragoman embed` / `dragoman search`."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config, write_copy_task
from dragoman.cli import main
from dragoman.config import parse_config
from dragoman.embed import Embedder, SemanticSearch, load_or_build_index, sidecar_path, top_k, unit
from dragoman.errors import DragomanError
from dragoman.train import train

MODELS = {
    "transformer": {"encoder": "transformer", "decoder": "transformer", "heads": 2, "ff": 64},
    "lstm": {"encoder": "lstm", "decoder": "lstm", "hidden": 16},
    "cnn": {"encoder": "cnn", "decoder": "lstm", "hidden": 16},
}
SHORT, LONG = "a b", "c d e f g h a b"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_copy_task(tmp_path_factory.mktemp("embed") / "data", n_train=200, n_dev=20)


def _train(data: dict, root: Path, name: str) -> Path:
    model = {"enc_layers": 1, "dec_layers": 1, **MODELS[name]}
    config = tiny_config(data, root / name, model, max_steps=10, validate_every=10, dev_sentences=5)
    return train(parse_config(config))


@pytest.fixture(scope="module")
def model_dirs(data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: _train(data, root, name) for name in MODELS}


@pytest.fixture(scope="module")
def embedder(model_dirs) -> Embedder:
    return Embedder.load(model_dirs["transformer"])


def hand_pooled(embedder: Embedder, text: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the first of `model.encode` states of one unpadded sentence."""
    src = torch.tensor([embedder.src_tok.encode(text)])
    with torch.no_grad():
        states = embedder.model.encode(src).states[0]  # (S, D)
    return states.mean(0).numpy(), states[0].numpy()


@pytest.fixture(scope="module")
def corpus(data) -> list[str]:
    """Distinct lines of the copy task, so each line is its own only exact match."""
    lines = Path(data["train"] + ".src").read_text().splitlines()
    return list(dict.fromkeys(lines))[:60]


# ---------------------------------------------------------------- vectors


@pytest.mark.parametrize("name", list(MODELS))
def test_vectors_are_the_pooled_encoder_states_whatever_the_padding(model_dirs, name):
    embedder = Embedder.load(model_dirs[name])
    mean, first = hand_pooled(embedder, SHORT)
    batch = embedder.embed([LONG, SHORT, "h"])  # one batch: SHORT is padded to LONG's length
    alone = embedder.embed([SHORT])
    assert batch.shape == (3, embedder.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[1], mean, atol=1e-5)
    np.testing.assert_allclose(alone[0], mean, atol=1e-5)
    np.testing.assert_allclose(batch[0], hand_pooled(embedder, LONG)[0], atol=1e-5)
    firsts = embedder.embed([LONG, SHORT], pooling="first")
    np.testing.assert_allclose(firsts[1], first, atol=1e-5)
    assert not np.allclose(first, mean, atol=1e-3)  # the two poolings differ: the test means something


def test_the_config_pooling_is_the_default(embedder, monkeypatch):
    monkeypatch.setattr(embedder.config.model, "pooling", "first")
    np.testing.assert_allclose(embedder.embed([SHORT])[0], hand_pooled(embedder, SHORT)[1], atol=1e-5)


def test_batching_by_tokens_does_not_change_the_vectors(embedder, corpus):
    one_batch = embedder.embed(corpus, batch_tokens=100_000)
    small_batches = embedder.embed(corpus, batch_tokens=8)
    np.testing.assert_allclose(small_batches, one_batch, atol=1e-5)


def test_normalize_gives_unit_vectors_in_the_same_direction(embedder, corpus):
    raw, unit = embedder.embed(corpus[:10]), embedder.embed(corpus[:10], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_empty_lines_get_the_zero_vector(embedder):
    vectors = embedder.embed(["", SHORT, "   "], normalize=True)
    assert not vectors[[0, 2]].any() and np.linalg.norm(vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_long_inputs_are_truncated_at_max_len_with_a_warning(embedder, caplog):
    max_len = embedder.config.data.max_len
    long = " ".join(["a", "b"] * max_len)
    with caplog.at_level(logging.WARNING, logger="dragoman"):
        vectors = embedder.embed(["c", long])
    assert "1 input(s) longer than 16 tokens were truncated (first: line 2)" in caplog.text
    truncated = " ".join(long.split()[:max_len])
    np.testing.assert_allclose(vectors[1], hand_pooled(embedder, truncated)[0], atol=1e-5)


def test_an_unknown_pooling_is_an_error(embedder):
    with pytest.raises(DragomanError, match="unknown pooling 'max'.*mean, first"):
        embedder.embed([SHORT], pooling="max")


def test_a_classifier_embeds_with_its_encoder(data, tmp_path):
    labels = {}
    for split in ("train", "dev", "test"):  # long or short: enough for a classifier to train on
        texts = Path(f"{data[split]}.src").read_text().splitlines()
        labels[split] = "".join(("long" if len(t.split()) > 3 else "short") + "\n" for t in texts)
        Path(f"{data[split]}.len").write_text(labels[split])
    model = {"heads": 2, "ff": 64, "enc_layers": 1, "pooling": "first"}
    config = tiny_config({**data, "tgt": "len"}, tmp_path / "classify", model, max_steps=5, validate_every=5)
    embedder = Embedder.load(train(parse_config({**config, "task": "classify"})))
    np.testing.assert_allclose(embedder.embed([LONG, SHORT])[1], hand_pooled(embedder, SHORT)[1], atol=1e-5)


def test_a_language_model_is_refused_with_a_clear_error(data, embedder, tmp_path):
    lm_data = {key: value for key, value in data.items() if key != "tgt"}
    config = tiny_config(lm_data, tmp_path / "lm", {"heads": 2, "ff": 64, "dec_layers": 1}, max_steps=2)
    config = parse_config({**config, "task": "lm"})
    lm_dir = train(config)
    with pytest.raises(DragomanError, match=r"lm/config.yaml: .*language model \(task: lm\).*no encoder"):
        Embedder.load(lm_dir)
    with pytest.raises(DragomanError, match="task: seq2seq or classify"):
        Embedder(embedder.model, config, embedder.src_tok)


# ---------------------------------------------------------------- search


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of non-zero rows, the k best per query: scores and indices."""
    with np.errstate(invalid="ignore"):  # a zero query row: NaN scores, not looked at
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ (corpus / np.linalg.norm(corpus, axis=1, keepdims=True)).T
    index = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, index, axis=1), index


def test_chunked_top_k_equals_brute_force_and_skips_zero_rows():
    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(103, 8)).astype(np.float32), rng.normal(size=(9, 8)).astype(np.float32)
    corpus, queries = unit(corpus), unit(queries)  # so dot products are cosines
    corpus[[5, 50, 99]] = 0.0  # empty lines
    queries[3] = 0.0  # an empty query
    scores, index = top_k(queries, corpus, k=7, chunk=10, query_chunk=4)
    keep = np.flatnonzero(corpus.any(axis=1))
    expected_scores, expected = brute_force(queries, corpus[keep], k=7)
    for q in (0, 1, 2, 4, 5, 6, 7, 8):
        assert list(index[q]) == list(keep[expected[q]])
        np.testing.assert_allclose(scores[q], expected_scores[q], rtol=1e-5)
    assert list(index[3]) == [-1] * 7 and np.isneginf(scores[3]).all()
    # More places than usable rows: the rest are empty (-1, -inf).
    scores, index = top_k(queries[:1], corpus[:6], k=10, chunk=4)
    assert index.shape == (1, 6) and sorted(index[0][:5]) == [0, 1, 2, 3, 4] and index[0][5] == -1


def test_a_corpus_line_finds_itself_first(embedder, corpus):
    search = SemanticSearch.build(embedder, corpus)
    results = search.search(corpus[:20], k=3)
    for i, hits in enumerate(results):
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].line == i + 1 and hits[0].text == corpus[i]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[1].score < hits[0].score - 1e-4


def test_search_ranks_like_brute_force_cosine(embedder, corpus):
    queries = ["a a b", "h g", "c d e f", "b"]
    hits = SemanticSearch.build(embedder, corpus).search(queries, k=5)
    scores, index = brute_force(embedder.embed(queries), embedder.embed(corpus), k=5)
    for q in range(len(queries)):
        assert [h.line - 1 for h in hits[q]] == list(index[q])
        np.testing.assert_allclose([h.score for h in hits[q]], scores[q], atol=1e-5)
        assert [h.text for h in hits[q]] == [corpus[i] for i in index[q]]


def test_empty_corpus_lines_are_never_hits_and_empty_queries_have_none(embedder):
    corpus = ["a b", "", "c d", "   ", "e f"]
    results = SemanticSearch.build(embedder, corpus).search(["a b", ""], k=5)
    assert sorted(h.line for h in results[0]) == [1, 3, 5]
    assert results[1] == []


# ---------------------------------------------------------------- the index cache


@pytest.fixture
def corpus_file(tmp_path, corpus) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("".join(line + "\n" for line in corpus))
    return path


class Counting:
    """Counts the lines an embedder embeds."""

    def __init__(self, embedder: Embedder, monkeypatch) -> None:
        self.lines, self._embed = 0, embedder.embed
        monkeypatch.setattr(embedder, "embed", self)

    def __call__(self, texts, *args, **kwargs):
        self.lines += len(texts)
        return self._embed(texts, *args, **kwargs)


def test_the_index_is_written_then_reused(embedder, corpus, corpus_file, tmp_path, monkeypatch):
    index = tmp_path / "corpus.npy"
    built = SemanticSearch.from_file(embedder, corpus_file, index)
    assert index.exists() and sidecar_path(index).exists()
    sidecar = json.loads(sidecar_path(index).read_text())
    assert sidecar["corpus"]["sha256"] and sidecar["model"]["weights_sha256"] == embedder.weights_sha256
    assert sidecar["rows"] == len(corpus) and sidecar["pooling"] == "mean"
    np.testing.assert_array_equal(np.load(index, allow_pickle=False), built.vectors)
    counting = Counting(embedder, monkeypatch)
    os.utime(corpus_file, ns=(1, 1))  # touched, not changed: the SHA-256 decides
    reused = SemanticSearch.from_file(embedder, corpus_file, index)
    assert counting.lines == 0
    np.testing.assert_array_equal(reused.vectors, built.vectors)
    assert reused.search([corpus[4]], k=1)[0][0].line == 5


def test_a_stale_index_is_rebuilt_or_refused(embedder, corpus, corpus_file, tmp_path, monkeypatch, caplog):
    index = tmp_path / "corpus.npy"
    SemanticSearch.from_file(embedder, corpus_file, index)
    corpus_file.write_text("".join(line + "\n" for line in ["h h h", *corpus]))
    with pytest.raises(DragomanError, match=r"corpus.npy: stale index: the corpus changed.*--no-rebuild"):
        SemanticSearch.from_file(embedder, corpus_file, index, rebuild=False)
    counting = Counting(embedder, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="dragoman"):
        search = SemanticSearch.from_file(embedder, corpus_file, index)
    assert "is stale (the corpus changed" in caplog.text and counting.lines == len(corpus) + 1
    assert search.search(["h h h"], k=1)[0][0].line == 1
    assert json.loads(sidecar_path(index).read_text())["rows"] == len(corpus) + 1
    with pytest.raises(DragomanError, match="stale index: it was built with pooling mean, not first"):
        SemanticSearch.from_file(embedder, corpus_file, index, pooling="first", rebuild=False)


def test_an_index_from_other_weights_or_a_damaged_one_is_stale(
    model_dirs, embedder, corpus, corpus_file, tmp_path
):
    index = tmp_path / "corpus.npy"
    SemanticSearch.from_file(embedder, corpus_file, index)
    other = Embedder.load(model_dirs["transformer"], checkpoint="last")
    torch.nn.init.zeros_(other.model.encoder.norm.bias)  # other weights, same shapes
    other.model.encoder.norm.bias.data += 0.5
    with pytest.raises(DragomanError, match="stale index: it was built with other weights"):
        SemanticSearch.from_file(other, corpus_file, index, rebuild=False)
    index.write_bytes(index.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DragomanError, match="corpus.npy does not match its sidecar"):
        SemanticSearch.from_file(embedder, corpus_file, index, rebuild=False)


def test_a_npy_file_without_sidecar_is_never_overwritten(embedder, corpus, corpus_file, tmp_path):
    index = tmp_path / "mine.npy"
    np.save(index, np.arange(3.0))
    before = index.read_bytes()
    with pytest.raises(DragomanError, match="mine.npy: exists but has no sidecar mine.npy.json"):
        SemanticSearch.from_file(embedder, corpus_file, index)
    assert index.read_bytes() == before
    with pytest.raises(DragomanError, match="must end in .npy"):
        load_or_build_index(embedder, corpus_file, corpus, tmp_path / "index.bin", "mean")


# ---------------------------------------------------------------- the CLI


def test_cli_embed_writes_npy_and_text(
    model_dirs, embedder, corpus, corpus_file, tmp_path, monkeypatch, capsys
):
    model = str(model_dirs["transformer"])
    expected = embedder.embed([*corpus, ""], normalize=True)
    corpus_file.write_text(corpus_file.read_text() + "\n")  # an empty last line
    out = tmp_path / "vectors.npy"
    assert main(["embed", model, "-i", str(corpus_file), "-o", str(out), "--normalize"]) == 0
    np.testing.assert_allclose(np.load(out, allow_pickle=False), expected, atol=1e-6)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a b\n\nc d e\n"))
    capsys.readouterr()
    assert main(["embed", model, "--pooling", "first"]) == 0
    rows = capsys.readouterr().out.splitlines()
    text = np.array([[float(x) for x in row.split(" ")] for row in rows], dtype=np.float32)
    np.testing.assert_allclose(text, embedder.embed(["a b", "", "c d e"], pooling="first"), rtol=1e-6)
    assert not text[1].any() and text.shape == (3, embedder.dim)


def test_cli_search_text_and_json(model_dirs, corpus, corpus_file, tmp_path, capsys):
    model, queries = str(model_dirs["transformer"]), tmp_path / "queries.txt"
    queries.write_text(f"{corpus[2]}\n\n{corpus[7]}\n")
    args = ["search", model, "--corpus", str(corpus_file), "-i", str(queries), "-k", "3"]
    capsys.readouterr()
    assert main([*args, "--index", str(tmp_path / "index.npy")]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == f"> {corpus[2]}" and lines[4] == "" and lines[5:7] == ["> ", ""]
    assert lines[7] == f"> {corpus[7]}" and lines[11:] == ["", ""]
    rank, score, line, text = lines[1].split("\t")
    assert (rank, line, text) == ("1", "3", corpus[2]) and float(score) == pytest.approx(1.0, abs=1e-3)
    assert [row.split("\t")[0] for row in lines[1:4]] == ["1", "2", "3"]
    scores = [float(row.split("\t")[1]) for row in lines[1:4]]
    assert scores == sorted(scores, reverse=True)
    assert main([*args, "--format", "json"]) == 0
    records = [json.loads(row) for row in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in records] == [corpus[2], "", corpus[7]] and records[1]["hits"] == []
    assert records[2]["hits"][0] == {
        "rank": 1,
        "score": pytest.approx(1.0, abs=1e-5),
        "line": 8,
        "text": corpus[7],
    }
    assert [h["rank"] for h in records[0]["hits"]] == [1, 2, 3]


def test_cli_search_errors_name_the_file(model_dirs, tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert main(["search", str(model_dirs["transformer"]), "--corpus", str(missing), "-i", str(missing)]) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err
    missing.write_text("a b\n")
    assert main(["search", str(tmp_path / "no-model"), "--corpus", str(missing)]) == 2
    assert f"{tmp_path / 'no-model'}: model directory not found" in capsys.readouterr().err
