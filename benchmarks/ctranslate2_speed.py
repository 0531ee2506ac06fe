"""dragoman (PyTorch) against its CTranslate2 export, float32 and int8, on one source file.

    python benchmarks/ctranslate2_speed.py runs/transformer --src ../shared/data/ui-en-de/test.en \\
        --ref ../shared/data/ui-en-de/test.de --beam 5 --threads 2

Exports the model twice (float32, int8) into a temporary directory, then translates the whole
file with each system in turn, round-robin, `--repeats` times (after one small warm-up each),
and keeps each system's median time. All three batch the same way (inputs sorted by length, at
most --batch-tokens source tokens per batch) with the same beam, length penalty and length
limits; torch and CTranslate2 both get --threads threads. Prints one Markdown table: sentences/s,
output tokens/s (the outputs re-tokenized with the target tokenizer), BLEU against --ref
(sacreBLEU), the share of lines identical to dragoman's output, and the speed-up over dragoman.
Greedy outputs should be identical; with beam > 1 and length_penalty > 0 CTranslate2 normalizes
by length**alpha instead of GNMT's ((5 + length) / 6)**alpha, so some lines differ.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ctranslate2
import torch

from dragoman.data.text import read_lines
from dragoman.export import CTranslate2Translator, export_ctranslate2
from dragoman.metrics import corpus_scores
from dragoman.translator import Translator


def measure(systems: dict[str, Callable[[list[str]], list[str]]], texts: list[str], repeats: int):
    """Each system's outputs and median seconds, timed round-robin so load drifts hit all alike."""
    for translate in systems.values():
        translate(texts[:10])  # warm-up: lazy initialisation, thread pools, allocator
    seconds: dict[str, list[float]] = {name: [] for name in systems}
    outputs: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, translate in systems.items():
            started = time.perf_counter()
            outputs[name] = translate(texts)
            seconds[name].append(time.perf_counter() - started)
    return outputs, {name: statistics.median(times) for name, times in seconds.items()}


def table(outputs, seconds, tgt_tok, refs: list[str] | None) -> str:
    baseline = "dragoman (PyTorch)"
    header = ["system", "sent/s", "tok/s", "BLEU", "same as dragoman", "speed-up"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, hyps in outputs.items():
        tokens = sum(len(ids) for ids in tgt_tok.encode_batch(hyps))
        same = sum(a == b for a, b in zip(hyps, outputs[baseline])) / len(hyps)
        bleu = f"{corpus_scores(hyps, refs)['bleu']:.1f}" if refs else "-"
        row = [
            name,
            f"{len(hyps) / seconds[name]:.1f}",
            f"{tokens / seconds[name]:,.0f}",
            bleu,
            f"{100 * same:.1f}%",
            f"{seconds[baseline] / seconds[name]:.2f}×",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--src", type=Path, required=True, help="source file, one sentence a line")
    parser.add_argument("--ref", type=Path, help="reference file for BLEU")
    parser.add_argument("--lines", type=int, help="only the first N lines (a quick check)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--length-penalty", type=float, help="default: the config's decode section")
    parser.add_argument("--batch-tokens", type=int, help="default: the config's decode section")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    texts = read_lines(args.src)[: args.lines]
    refs = read_lines(args.ref)[: args.lines] if args.ref else None
    dragoman = Translator.load(args.model_dir, args.checkpoint, args.device)
    decode = dragoman.config.decode
    options = {
        "beam": args.beam,
        "n_best": 1,
        "length_penalty": decode.length_penalty if args.length_penalty is None else args.length_penalty,
        "batch_tokens": args.batch_tokens or decode.batch_tokens,
    }
    systems = {"dragoman (PyTorch)": lambda batch: dragoman.translate(batch, **options)}
    with tempfile.TemporaryDirectory() as tmp:
        for quantization in ("float32", "int8"):
            out = export_ctranslate2(args.model_dir, Path(tmp) / quantization, quantization, args.checkpoint)
            ct2 = CTranslate2Translator.load(
                out, device=args.device, intra_threads=args.threads, inter_threads=1
            )
            systems[f"CTranslate2 {quantization}"] = lambda batch, ct2=ct2: ct2.translate(batch, **options)
        outputs, seconds = measure(systems, texts, args.repeats)

    print(
        f"{args.model_dir}, {len(texts)} lines of {args.src}, beam {args.beam}, length penalty "
        f"{options['length_penalty']}, {options['batch_tokens']} tokens/batch, {args.threads} threads, "
        f"{args.device}, median of {args.repeats}; torch {torch.__version__}, "
        f"ctranslate2 {ctranslate2.__version__}\n"
    )
    print(table(outputs, seconds, dragoman.tgt_tok, refs))


if __name__ == "__main__":
    main()
