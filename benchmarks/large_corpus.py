"""Large corpora: `dragoman prepare` and `dragoman train` in bounded memory.

    python benchmarks/large_corpus.py --workdir /tmp/dragoman-large --sizes 100000 10000000

Generates a synthetic parallel corpus per size (deterministic: words drawn from a fixed Zipfian
vocabulary, 5-40 words a line; the "translation" maps each word to its own target word and reverses
the order), writes a config (joint BPE tokenizer learned from a bounded sample of the corpus, a tiny
Transformer, one CPU thread), then runs `dragoman prepare` and a short `dragoman train` (30 steps),
each as a subprocess. Per size it measures the prepare wall time, the peak resident memory (RSS) of
each process (from wait4), and the seconds from starting `dragoman train` until the first optimizer
step is logged to metrics.jsonl. Prints one Markdown table.

Corpora are kept in the work directory and reused by later runs; model directories are rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

VOCAB = 20_000  # distinct source (and target) words
LINES_PER_CHUNK = 100_000  # generated at a time
SRC_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
TGT_SYLLABLES = [c + v for c in "chjqwxy" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def words(syllables: list[str], count: int) -> np.ndarray:
    """`count` distinct words, word i spelling i in base len(syllables) (at least two syllables)."""
    base, out = len(syllables), []
    for i in range(count):
        word, n = [], i + base  # + base: every word has two syllables or more
        while n:
            n, digit = divmod(n, base)
            word.append(syllables[digit])
        out.append("".join(word))
    return np.array(out, dtype=object)


def write_corpus(prefix: Path, pairs: int, seed: int = 0) -> None:
    """{prefix}.src and {prefix}.tgt with `pairs` lines each; the same arguments give the same bytes."""
    src_words, tgt_words = words(SRC_SYLLABLES, VOCAB), words(TGT_SYLLABLES, VOCAB)
    cdf = np.cumsum(1.0 / np.arange(1, VOCAB + 1))  # Zipf: word r is drawn with p ∝ 1 / r
    cdf /= cdf[-1]
    rng = np.random.default_rng(seed)
    with open(f"{prefix}.src", "w") as src, open(f"{prefix}.tgt", "w") as tgt:
        for start in range(0, pairs, LINES_PER_CHUNK):
            lengths = rng.integers(5, 41, size=min(LINES_PER_CHUNK, pairs - start))
            ids = np.minimum(np.searchsorted(cdf, rng.random(lengths.sum())), VOCAB - 1)
            cuts = np.cumsum(lengths)[:-1]
            src_lines = [" ".join(w) for w in np.split(src_words[ids], cuts)]
            tgt_lines = [" ".join(w[::-1]) for w in np.split(tgt_words[ids], cuts)]
            src.write("\n".join(src_lines) + "\n")
            tgt.write("\n".join(tgt_lines) + "\n")


def corpus(workdir: Path, pairs: int) -> Path:
    """The corpus of `pairs` pairs under `workdir`, generated unless a finished one is there."""
    prefix = workdir / f"corpus-{pairs}" / "train"
    done = prefix.parent / "done"
    if not done.exists():
        prefix.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_corpus(prefix, pairs)
        done.write_text(f"{time.perf_counter() - started:.0f} s to generate\n")
    return prefix


def write_config(workdir: Path, prefix: Path, pairs: int, sample_size: int) -> Path:
    config = {
        "data": {
            "src": "src",
            "tgt": "tgt",
            "train": str(prefix),
            "max_len": 128,
            "tokenizer": {"kind": "bpe", "vocab_size": 8000, "sample_size": sample_size},
        },
        "model": {"d_model": 64, "heads": 2, "ff": 128, "enc_layers": 1, "dec_layers": 1},
        "train": {
            "model_dir": str(workdir / f"model-{pairs}"),
            "device": "cpu",
            "threads": 1,
            "batch_tokens": 4096,
            "max_steps": 30,
            "log_every": 1,  # the first metrics.jsonl row marks the first step
            "validate_every": 1000,
        },
    }
    path = workdir / f"config-{pairs}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Process:
    seconds: float
    peak_rss: int  # bytes
    first_step: float | None  # seconds until metrics.jsonl had a training row (train only)


def run(command: list[str], log: Path, metrics: Path | None = None) -> Process:
    """Run `command` to the end, logging to `log`; its wall time and peak RSS (wait4's ru_maxrss)."""
    started, first_step = time.perf_counter(), None
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if first_step is None and metrics is not None and metrics.exists() and metrics.stat().st_size:
                first_step = time.perf_counter() - started
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return Process(seconds, usage.ru_maxrss * 1024, first_step)


def size(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def human(n: float, unit: str = "B") -> str:
    for prefix in ("", "K", "M", "G"):
        if n < 1000 or prefix == "G":
            return f"{n:.0f} {prefix}{unit}" if n >= 10 or not prefix else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    raise AssertionError


def measure(workdir: Path, pairs: int, sample_size: int) -> dict[str, str]:
    prefix = corpus(workdir, pairs)
    config = write_config(workdir, prefix, pairs, sample_size)
    model_dir = workdir / f"model-{pairs}"
    shutil.rmtree(model_dir, ignore_errors=True)  # a fresh start: no metrics.jsonl of a past run
    dragoman = [sys.executable, "-m", "dragoman"]
    prepared = run([*dragoman, "prepare", str(config)], workdir / f"prepare-{pairs}.log")
    trained = run(
        [*dragoman, "train", str(config)], workdir / f"train-{pairs}.log", model_dir / "metrics.jsonl"
    )
    report = json.loads((model_dir / "data" / "prepared.json").read_text())["splits"]["train"]
    shards = sorted((model_dir / "data").glob("train.*"))
    return {
        "pairs": f"{pairs:,}",
        "corpus on disk": human(size([f"{prefix}.src", f"{prefix}.tgt"])),
        "shards on disk (ids + offsets)": human(size(shards)),
        "pairs kept": f"{report['kept']:,}",
        "prepare time": f"{prepared.seconds / 60:.1f} min",
        "prepare peak RSS": human(prepared.peak_rss),
        "time to first step": f"{trained.first_step:.1f} s" if trained.first_step else "?",
        "train peak RSS": human(trained.peak_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dragoman-large"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 10_000_000])
    parser.add_argument(
        "--sample-size", type=int, default=1_000_000, help="tokenizer.sample_size (the default)"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for pairs in args.sizes:
        rows.append(measure(args.workdir, pairs, args.sample_size))
        print(" | ".join(f"{k}: {v}" for k, v in rows[-1].items()), file=sys.stderr, flush=True)
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
