"""The classic-models table: trained model directories → params, steps, training speed, BLEU.

    for c in transformer lstm-bahdanau gru-luong sutskever-lstm; do dragoman train configs/$c.yaml; done
    python benchmarks/classic.py runs/transformer runs/lstm-bahdanau runs/gru-luong runs/sutskever-lstm

Per model directory: parameters, optimizer steps and minutes of training (metrics.jsonl), the
median of the logged training speeds (source + target tokens/s), the best greedy dev BLEU seen in
validation, then dev and test BLEU/chrF with beam 5 over the full sets named by the config, and
the sentences/s of that beam-5 test decoding. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dragoman.data.text import read_lines
from dragoman.metrics import corpus_scores
from dragoman.translator import Translator


def row(model_dir: Path, beam: int) -> dict[str, str]:
    translator = Translator.load(model_dir)
    config = translator.config
    logs = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logs if r["kind"] == "train"]
    valid = [r for r in logs if r["kind"] == "valid"]
    scores = {}
    for split in ("dev", "test"):
        src, ref = (read_lines(p) for p in config.data.files(split))
        started = time.perf_counter()
        hyp = translator.translate(src, beam=beam)
        seconds = time.perf_counter() - started
        scores[split] = corpus_scores(hyp, ref)
        scores[f"{split}_speed"] = len(src) / seconds
    params = sum(p.numel() for p in translator.model.parameters()) / 1e6
    return {
        "model": config.model.name,
        "params": f"{params:.1f}M",
        "steps": str(max(r["step"] for r in logs)),
        "train tok/s": f"{statistics.median(r['tokens_per_s'] for r in train):,.0f}",
        "best dev BLEU (greedy, validation)": f"{max(r['bleu'] for r in valid):.1f}",
        f"dev BLEU / chrF (beam {beam})": f"{scores['dev']['bleu']:.1f} / {scores['dev']['chrf']:.1f}",
        f"test BLEU / chrF (beam {beam})": f"{scores['test']['bleu']:.1f} / {scores['test']['chrf']:.1f}",
        f"test sent/s (beam {beam})": f"{scores['test_speed']:.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row(d, args.beam) for d in args.model_dirs]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(r.values()) + " |")


if __name__ == "__main__":
    main()
