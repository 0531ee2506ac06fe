"""Semantic search on debian-desc: find a package's long description from its one-line synopsis.

    dragoman train configs/debian-summarize.yaml          # the summarization Transformer (20 min)
    python examples/semantic_search.py runs/debian-summarize

The 2000 test descriptions (test.src) are the corpus, embedded by the model's encoder (mean and
first-token pooling); each synopsis (test.tgt) is a query whose right answer is its own package's
description (same line). Prints recall@1, recall@10 and the mean reciprocal rank over the 2000
queries for the model, for the model's vectors whitened with the descriptions' own statistics
(Su et al., 2021; not part of `dragoman search`), for a TF-IDF cosine baseline (plain numpy, no
model) and for random order, then the top 3 hits of a few queries. "seconds": embedding the 2000
descriptions and 2000 synopses, or computing TF-IDF and its scores. A rank counts every description scored higher than the right
one; ties (TF-IDF queries sharing no word with any description) are broken at random, seeded.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dragoman.data.text import read_lines
from dragoman.embed import Embedder, SemanticSearch, unit

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "debian-desc"


def ranks(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """1-based rank of the right answer (the diagonal) in each row of a (Q, Q) score matrix."""
    right = np.diag(scores)[:, None]
    higher = (scores > right).sum(axis=1)
    ties = (scores == right).sum(axis=1) - 1
    return 1 + higher + np.random.default_rng(seed).integers(0, ties + 1)


def summary(rank: np.ndarray) -> list[str]:
    return [f"{np.mean(rank <= 1):.1%}", f"{np.mean(rank <= 10):.1%}", f"{np.mean(1 / rank):.3f}"]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def tfidf_scores(queries: list[str], docs: list[str]) -> np.ndarray:
    """Cosine similarities (Q, N) of TF-IDF vectors: (1 + log tf) × (1 + log N/df), idf from `docs`.
    Only the words some query has are columns: the others add nothing to a dot product."""
    counts = [Counter(words(d)) for d in docs]
    df = Counter(w for c in counts for w in c)
    idf = {w: 1 + math.log(len(docs) / n) for w, n in df.items()}
    columns = {w: j for j, w in enumerate(sorted({w for q in queries for w in words(q)} & idf.keys()))}

    def matrix(bags: list[Counter]) -> np.ndarray:
        out = np.zeros((len(bags), len(columns)), dtype=np.float32)
        for i, bag in enumerate(bags):
            weights = {w: (1 + math.log(n)) * idf[w] for w, n in bag.items() if w in idf}
            norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
            for w, v in weights.items():
                if w in columns:
                    out[i, columns[w]] = v / norm
        return out

    return matrix([Counter(words(q)) for q in queries]) @ matrix(counts).T


def whiten(queries: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides centred on the descriptions' mean and decorrelated by their covariance (the
    "whitening" of Su et al., 2021, "Whitening Sentence Representations for Better Semantics and
    Faster Retrieval"); no labels used. Not part of `dragoman search`."""
    mean = docs.mean(axis=0)
    u, s, _ = np.linalg.svd(np.cov((docs - mean).T))
    w = u / np.sqrt(s + 1e-6)  # (D, D)
    return unit((queries - mean) @ w), unit((docs - mean) @ w)


def model_rows(embedder: Embedder, docs: list[str], queries: list[str], pooling: str):
    """Table rows for one pooling (plain, whitened) and the SemanticSearch over `docs`."""
    start = time.perf_counter()
    doc_vectors, query_vectors = embedder.embed(docs, pooling), embedder.embed(queries, pooling)
    seconds = time.perf_counter() - start
    search = SemanticSearch(embedder, docs, unit(doc_vectors), pooling)
    rank = ranks(unit(query_vectors) @ search.vectors.T)
    # Cross-check: the search API's top 10 agree with the full ranking (up to float rounding).
    top10 = search.search(queries, k=10)
    found = np.mean([i + 1 in {hit.line for hit in hits} for i, hits in enumerate(top10)])
    assert abs(found - np.mean(rank <= 10)) < 0.002, (found, np.mean(rank <= 10))
    name = f"{embedder.model_dir.name} encoder, {pooling} pooling"
    q, d = whiten(query_vectors, doc_vectors)
    whitened = ranks(q @ d.T)
    rows = [[name, *summary(rank), f"{seconds:.1f}"], [f"{name}, whitened", *summary(whitened), "-"]]
    return rows, search


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, default=DATA, help="the debian-desc folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--examples", nargs="*", default=["qcat", "pipewalker", "dict-freedict-por-eng"])
    args = parser.parse_args()

    docs = read_lines(args.data / f"{args.split}.src")
    queries = read_lines(args.data / f"{args.split}.tgt")
    packages = read_lines(args.data / f"{args.split}.pkg")
    n = len(docs)
    random_mrr = sum(1 / r for r in range(1, n + 1)) / n
    rows = [["random order (expected)", f"{1 / n:.1%}", f"{10 / n:.1%}", f"{random_mrr:.3f}", "-"]]
    start = time.perf_counter()
    tfidf = summary(ranks(tfidf_scores(queries, docs)))
    rows.append(["TF-IDF cosine (numpy)", *tfidf, f"{time.perf_counter() - start:.1f}"])
    embedder = Embedder.load(args.model_dir)
    searches = {}
    for pooling in ("mean", "first"):
        pooling_rows, searches[pooling] = model_rows(embedder, docs, queries, pooling)
        rows += pooling_rows

    print(f"{n} {args.split} synopses as queries against the {n} {args.split} descriptions\n")
    print("| method | recall@1 | recall@10 | MRR | seconds |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")

    chosen = [packages.index(p) for p in args.examples if p in packages]
    for i, hits in zip(chosen, searches["mean"].search([queries[i] for i in chosen], k=3)):
        print(f"\nquery: {queries[i]!r} (package {packages[i]}, line {i + 1})")
        for hit in hits:
            mark = "*" if hit.line == i + 1 else " "  # * = the right answer
            print(f" {mark}{hit.rank}  {hit.score:.3f}  {packages[hit.line - 1]}: {hit.text[:80]}…")


if __name__ == "__main__":
    main()
