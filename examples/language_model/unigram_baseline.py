"""The perplexity a language model has to beat: a unigram model (add-one smoothing) over the same
tokens, counted on the training text, measured on the test text the way `dragoman evaluate` does
(<s> text </s>, texts cut at the model's max_positions - 1 tokens, </s> counted).

    python examples/language_model/unigram_baseline.py runs/debian-lm \\
        ../shared/data/debian-desc/train.src ../shared/data/debian-desc/test.src
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

from dragoman.data.text import read_lines
from dragoman.data.tokenizers import EOS, load_tokenizer
from dragoman.translator import load_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("train", type=Path)
    parser.add_argument("test", type=Path)
    args = parser.parse_args()
    model = load_model(args.model_dir)[0]
    tok = load_tokenizer(args.model_dir / "tokenizer")
    counts: Counter[int] = Counter()
    for ids in tok.encode_batch([line for line in read_lines(args.train) if line.strip()]):
        counts.update(ids)
        counts[EOS] += 1
    total = sum(counts.values())
    nll, n = 0.0, 0
    for ids in tok.encode_batch([line for line in read_lines(args.test) if line.strip()]):
        for i in [*ids[: model.max_positions - 1], EOS]:
            nll -= math.log((counts[i] + 1) / (total + tok.vocab_size))
            n += 1
    print(f"unigram (add-one) perplexity {math.exp(nll / n):.1f} ({n} tokens, </s> included)")


if __name__ == "__main__":
    main()
