"""Transformer-base (6+6 layers, d_model 512) on one GPU: training tokens/s, model FLOPs utilisation,
decoding speed and BLEU, through the commands a user runs.

    python benchmarks/gpu_train.py --data ../shared/data/ui-en-de --work-dir /tmp/dragoman-gpu

Every training run is `torchrun --standalone --nproc_per_node=1 -m dragoman train CONFIG`: one
process in a process group (NCCL on a GPU), the model in DistributedDataParallel, gradients
all-reduced, as on many GPUs. The data is prepared once (`dragoman prepare`) and copied into each
run. Each --variants entry PRECISION[-compile]:BATCH_TOKENS trains --steps steps; its speed is the
harmonic mean of the logged windows after --warmup-steps (source + target non-padding tokens per
second, from metrics.jsonl).

Model FLOPs per token: torch's FlopCounterMode counts the matrix products and attention of one
forward and backward pass for each of --flop-pairs training pairs, one pair at a time (no padding),
divided by their source + target tokens. Achieved FLOP/s = tokens/s × FLOPs per token; MFU =
that / the GPU's dense bf16 peak (--peak-tflops; 989 for an H100 or H200 SXM), for fp32 runs too.

With --bleu-minutes M, a last bf16 run trains M minutes, then its best weights translate the test
set greedy and with beam 5, in fp32 and bf16 (`Translator`, timed after a warm-up), with sacreBLEU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from dragoman.config import load_config
from dragoman.data.prepare import load_batches, load_tokenizers
from dragoman.data.text import read_lines
from dragoman.metrics import corpus_scores
from dragoman.models import build_model
from dragoman.train import autocast, batch_loss, predict
from dragoman.translator import Translator

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the CPU: a slow smoke test
BASE = {  # Vaswani et al.'s base model, on a joint 8k BPE vocabulary
    "d_model": 512,
    "heads": 8,
    "ff": 2048,
    "enc_layers": 6,
    "dec_layers": 6,
    "dropout": 0.1,
    "norm": "pre",
    "tie_output": True,
}


def config(data: Path, model_dir: Path, precision: str, batch_tokens: int, compile: bool, **train) -> dict:
    return {
        "name": "transformer-base",
        "data": {
            "src": "en",
            "tgt": "de",
            "train": str(data / "train"),
            "dev": str(data / "dev"),
            "test": str(data / "test"),
            "max_len": 100,
            "joint_vocab": True,
            "tokenizer": {"kind": "bpe", "vocab_size": 8000},
        },
        "model": {"encoder": "transformer", "decoder": "transformer", **BASE},
        "train": {
            "model_dir": str(model_dir),
            "seed": 1,
            "batch_tokens": batch_tokens,
            "optimizer": {"name": "adam", "lr": 0.0007, "betas": [0.9, 0.98], "eps": 1.0e-9},
            "schedule": {"name": "inverse_sqrt", "warmup": 1000},
            "label_smoothing": 0.1,
            "clip_grad_norm": 1.0,
            "log_every": 10,
            "validate_every": 1_000_000,  # only at the end
            "dev_sentences": 500,
            "precision": precision,
            "compile": compile,
            "device": DEVICE.type,
            **train,
        },
        "decode": {"beam": 5, "length_penalty": 1.0, "batch_tokens": 8192},
    }


def write(path: Path, settings: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def dragoman(*args: str, torchrun: bool = False) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    command = [*(launcher if torchrun else [sys.executable]), "-m", "dragoman", *args]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def flops_per_token(config_path: Path, pairs: int) -> float:
    """Forward + backward FLOPs per source + target token, counted one training pair at a time."""
    cfg = load_config(config_path)
    data = load_batches(cfg, "train", cfg.train.batch_tokens)
    src_tok, tgt_tok = load_tokenizers(Path(cfg.train.model_dir), cfg)
    model = build_model(cfg.model, src_tok.vocab_size, tgt_tok.vocab_size).to(DEVICE)
    indices = [i for batch in data.epoch(0) for i in batch.tolist()][:: max(1, len(data) // pairs)][:pairs]
    flops = tokens = 0
    for i in indices:
        batch = data.collate(np.array([i])).to(DEVICE)
        with FlopCounterMode(display=False) as counter, autocast(cfg, DEVICE):
            batch_loss(predict(model, batch), batch, 0.1).backward()
        flops += counter.get_total_flops()
        tokens += batch.src_tokens + batch.tgt_tokens
    return flops / tokens


def speed(model_dir: Path, warmup_steps: int) -> float:
    windows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [w["tokens_per_s"] for w in windows if w["kind"] == "train" and w["step"] > warmup_steps]
    return statistics.harmonic_mean(rates)


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def decode_table(model_dir: Path, data: Path, lines: int) -> list[list[str]]:
    src = read_lines(data / "test.en")[:lines]
    ref = read_lines(data / "test.de")[:lines]
    rows = []
    for precision in ("fp32", "bf16"):
        translator = Translator.load(model_dir, device=DEVICE.type, precision=precision)
        for beam in (1, 5):
            translator.translate(src[:200], beam=beam)  # warm-up
            synchronize()
            start = time.perf_counter()
            out = translator.translate(src, beam=beam)
            synchronize()
            seconds = time.perf_counter() - start
            bleu = corpus_scores(out, ref)["bleu"]
            rows.append([precision, str(beam), f"{len(src) / seconds:,.0f}", f"{bleu:.1f}"])
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ui-en-de"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dragoman-gpu"))
    parser.add_argument("--variants", default="bf16:16384,fp32:16384,bf16-compile:16384,bf16:32768")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--flop-pairs", type=int, default=300)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--bleu-minutes", type=float, default=0.0)
    parser.add_argument("--test-lines", type=int, default=2000)
    args = parser.parse_args()
    data, work = args.data.resolve(), args.work_dir.resolve()
    if DEVICE.type == "cuda":
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, NCCL {torch.cuda.nccl.version()}")
    else:
        print("no CUDA GPU: a smoke test on the CPU (Gloo), figures meaningless")

    prepared = work / "prepared"
    first = write(work / "prepare.yaml", config(data, prepared, "bf16", 16384, False, max_steps=1))
    if not (prepared / "data").exists():
        dragoman("prepare", str(first))
    per_token = flops_per_token(first, args.flop_pairs)
    print(f"model FLOPs per source + target token (forward + backward): {per_token / 1e9:.3f} GFLOP")

    rows = []
    for variant in args.variants.split(","):
        name, batch_tokens = variant.split(":")
        precision, _, compiled = name.partition("-")
        run = work / variant.replace(":", "-")
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(prepared, run)
        path = write(run.with_suffix(".yaml"), config(data, run, precision, int(batch_tokens), bool(compiled), max_steps=args.steps))
        dragoman("train", str(path), torchrun=True)
        tokens_s = speed(run, args.warmup_steps)
        achieved = tokens_s * per_token
        rows.append([name, batch_tokens, f"{tokens_s:,.0f}", f"{achieved / 1e12:.0f}", f"{100 * achieved / (args.peak_tflops * 1e12):.1f}%"])
        print(markdown(["run", "batch tokens", "train tok/s", "TFLOP/s", "MFU"], rows[-1:]), flush=True)
    print(markdown(["run", "batch tokens", "train tok/s", "TFLOP/s", "MFU"], rows))

    if args.bleu_minutes > 0:
        run = work / "bleu"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(prepared, run)
        settings = config(data, run, "bf16", 16384, False, max_minutes=args.bleu_minutes, validate_every=1000)
        dragoman("train", str(write(run.with_suffix(".yaml"), settings)), torchrun=True)
        print(f"after {args.bleu_minutes} minutes of training ({run}):")
        print(markdown(["weights", "beam", "sent/s", "test BLEU"], decode_table(run, data, args.test_lines)))


if __name__ == "__main__":
    main()
