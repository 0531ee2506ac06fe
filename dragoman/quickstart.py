"""`dragoman quickstart`: the whole job on a toy task the project makes itself.

Numbers written in digits → the same numbers in English words ("40213" → "forty thousand two
hundred thirteen"). The task needs real sequence-to-sequence skills (reordering, counting
positions, varying output length) yet a small Transformer learns it in minutes on a laptop CPU.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from dragoman.config import parse_config
from dragoman.io import atomic_write_text

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0 ≤ n < 1,000,000, without 'and' or hyphens."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def make_task(directory: Path, seed: int = 1, sizes: tuple[int, int, int] = (30000, 500, 500)) -> None:
    """Disjoint train/dev/test files {split}.num (digits) and {split}.words."""
    rng = random.Random(seed)
    numbers: set[int] = set()
    total = sum(sizes)
    while len(numbers) < total:
        digits = rng.randint(1, 6)  # as many short numbers as long ones
        numbers.add(rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10**digits))
    ordered = list(numbers)
    rng.shuffle(ordered)
    directory.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in zip(("train", "dev", "test"), sizes):
        chunk = ordered[start : start + size]
        start += size
        atomic_write_text(directory / f"{split}.num", "".join(f"{n}\n" for n in chunk))
        atomic_write_text(directory / f"{split}.words", "".join(f"{number_words(n)}\n" for n in chunk))


def quickstart_config(workdir: Path, minutes: float) -> dict:
    data = workdir / "data"
    return {
        "name": "quickstart-numbers",
        "data": {
            "src": "num",
            "tgt": "words",
            "train": str(data / "train"),
            "dev": str(data / "dev"),
            "test": str(data / "test"),
            "max_len": 64,
            "joint_vocab": False,
            "tokenizer": {"kind": "char", "vocab_size": 64},
            "tgt_tokenizer": {"kind": "word", "vocab_size": 64},
        },
        "model": {
            "d_model": 128,
            "heads": 4,
            "ff": 512,
            "enc_layers": 2,
            "dec_layers": 2,
            "dropout": 0.1,
        },
        "train": {
            "model_dir": str(workdir / "model"),
            "batch_tokens": 2048,
            "max_minutes": minutes,
            "max_steps": 20000,
            "optimizer": {"name": "adam", "lr": 2e-3},
            "schedule": {"name": "inverse_sqrt", "warmup": 300},
            "validate_every": 300,
            "log_every": 20,
            "dev_sentences": 500,
            "early_stopping": {"metric": "bleu"},
        },
        "decode": {"beam": 1, "max_len_a": 3.0, "max_len_b": 5},
    }


def run(workdir: Path, minutes: float = 3.0) -> float:
    """Make the task, train, translate the held-out test set; returns its exact-match accuracy."""
    from dragoman.data.text import read_lines
    from dragoman.metrics import corpus_scores
    from dragoman.train import train
    from dragoman.translator import Translator

    make_task(workdir / "data")
    raw = quickstart_config(workdir, minutes)
    atomic_write_text(workdir / "config.yaml", yaml.safe_dump(raw, sort_keys=False))
    print(
        f"toy task in {workdir / 'data'}, config in {workdir / 'config.yaml'}; training for {minutes:g} minutes"
    )
    model_dir = train(parse_config(raw, str(workdir / "config.yaml")))

    translator = Translator.load(model_dir)
    sources, references = (
        read_lines(workdir / "data/test.num"),
        read_lines(workdir / "data/test.words"),
    )
    hypotheses = translator.translate(sources, beam=5)
    for src, hyp, ref in list(zip(sources, hypotheses, references))[:5]:
        print(f"  {src:>7} → {hyp}" + ("" if hyp == ref else f"   (reference: {ref})"))
    accuracy = sum(h == r for h, r in zip(hypotheses, references)) / len(references)
    bleu = corpus_scores(hypotheses, references)["bleu"]
    print(
        f"test set ({len(references)} held-out numbers, beam 5): exact match {100 * accuracy:.1f}%, BLEU {bleu:.1f}"
    )
    print(f"try it: echo 90210 | dragoman translate {model_dir}")
    return accuracy
