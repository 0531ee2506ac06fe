"""dragoman against JoeyNMT 2.3.0, OpenNMT-py 3.5.1 and CTranslate2: one matched model, one table.

    nice -n 10 python benchmarks/speed.py                         # Transformer, about 2 hours
    nice -n 10 python benchmarks/speed.py --arch lstm-bahdanau    # the RNN path, about as long
    nice -n 10 python benchmarks/speed.py --quick                 # is everything wired? 5-20 min
    python benchmarks/speed.py --bleu-parallel                    # the README's run: about 1 hour
    nice -n 10 python benchmarks/speed.py --reuse --same-weights  # decoding only, ONE model for all

A full run is 3 × --bleu-minutes of training (1 h by default), ~10 min of timed training and
~30 min of decoding (3 rounds × 5 systems × 2000 lines, twice); --bleu-minutes 0 skips the hour,
and --bleu-parallel trains the three BLEU models at once, one thread (one core) each.

Every system runs as its own subprocess, driven the way a user drives it (`dragoman train`,
`python -m joeynmt train`, `onmt_train`, ...), with OMP_NUM_THREADS = --threads; the peers live in
their own virtual environments (--joeynmt, --onmt) and one that is not installed is skipped with
a note. All configs are written under --work-dir; the table goes to stdout and --out.

The matched model is configs/ARCH.yaml; the peers' configs are built from its values. All three
share one 8k joint SentencePiece BPE model (the one `dragoman prepare` trains; the peers get it
through their own tokenizer options and a vocabulary file of its pieces), drop training pairs with
a side longer than 100 pieces, and train on token batches of --batch-tokens padded tokens counted
as sentences × longest side: dragoman max(source, target + 1) and closes a batch before it would
pass the size, OpenNMT-py max(source, target + 2), JoeyNMT max(source + 1, target + 1) and closes
it once it reaches the size. dragoman and OpenNMT-py sort by length before batching; JoeyNMT 2.3
does not bucket, so its batches carry far more padding (about 1,600 source + target tokens a
step against OpenNMT-py's 6,900 in one --quick run). All use label smoothing 0.1, gradient-norm
clipping 1.0, a per-token loss, shared source/target embeddings and, where the sizes allow, a tied
output layer, and the same Adam betas and peak learning rate; the schedule is each toolkit's own
equivalent: dragoman inverse_sqrt = JoeyNMT warmupinversesquareroot (same peak, same warm-up) =
OpenNMT-py noam with learning_rate = peak × sqrt(d_model × warmup); the LSTM's constant rate is JoeyNMT's
"exponential" schedule with factor 1.0 (2.3 refuses none, and its plateau breaks on torch 2.13).
OpenNMT-py gets num_workers 0 (default 2) so that --threads is all the parallelism everywhere.

What could not be matched: Adam's eps is hard-coded to 1e-8 in both peers (dragoman's Transformer
uses 1e-9); JoeyNMT's attention dropout equals its dropout (dragoman and OpenNMT-py: 0); for the
LSTM both peers query the attention with the new decoder state (Luong's order; dragoman's Bahdanau
uses the previous one), their attentional vector has the decoder's width (512), so their output
layer cannot be tied to the 256-wide embeddings, and OpenNMT-py's bridge is a ReLU layer per state
(dragoman's and JoeyNMT's tanh): 7.0M parameters in dragoman's LSTM model, 10.1M in JoeyNMT's,
10.0M in OpenNMT-py's (the Transformers: 7.58M, 7.58M, 7.57M). The output length limit is
dragoman's 1.5 × source + 10 per sentence; JoeyNMT uses 1.5 × the batch's longest source,
OpenNMT-py min(160, 1.5 × the batch's longest source + 5), CTranslate2 160; dragoman and
CTranslate2 (max_input_length) cut inputs to 100 pieces, OpenNMT-py and JoeyNMT translate them
whole (5 of the 2000 test lines are longer).
Beam search uses GNMT's length penalty with alpha 1 (CTranslate2: length**1), but each toolkit its
own stopping rule: dragoman ends a sentence when no live beam can beat its finished ones,
OpenNMT-py and JoeyNMT when the best beam ends.
JoeyNMT decodes its input in file order (no length sorting), the others sort by length.

Decoding speed is like-for-like only on one model: the systems' own --bleu-minutes models differ
(in a 20-minute run the peers' still produced long garbage). With --same-weights every system
decodes dragoman's model (the --bleu-minutes one, else the speed-run one), which
benchmarks/peer_weights.py, run in each peer's environment, writes as an OpenNMT-py checkpoint
(WORK_DIR/ARCH/onmt/same/model.pt; CTranslate2 converts it as usual) and a JoeyNMT model directory
(joeynmt/same). The conversion is exact (same layers, sinusoids, sqrt(D) embedding scale, tied
output and vocabulary rows: see that file), and JoeyNMT's launcher stops it appending EOS to the
source, which dragoman's model never saw. On the first 200 test lines (the 20-minute model), greedy
outputs equal dragoman's on 94.5% of the lines with OpenNMT-py and CT2 float32, 94.0% with JoeyNMT;
every other line but one differs only where a length limit cut one of the two outputs (one is a
prefix of the other), and that one is the 182-piece input that dragoman and CTranslate2 cut (CT2
int8, quantized: 85.0% equal). With beam 5, where the stopping rules (and CTranslate2's penalty) differ too:
87.0% (OpenNMT-py), 95.5% (JoeyNMT), 59.5% (CT2 float32); in most lines that differ, dragoman's
output has the higher length-normalised score under the model.

Workarounds for the peers as installed (torch 2.13, sentencepiece 0.2.3), all in this file:
JoeyNMT calls SentencePieceProcessor.SetVocabulary, gone from sentencepiece 0.2.1+ (a no-op here,
since the vocabulary file lists every piece); its `translate -o` fails (args.n_best), so it
translates stdin to stdout; it needs a dev set even when it never validates (10 dev lines). The
OpenNMT-py checkpoints are pickles that torch 2.6+ refuses by default
(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for onmt_translate, --unsafe_deserialization for the
converter; these are files this run wrote), and OpenNMT-py 3.5 names its attention
"scaled-dot-flash" (torch's fused kernel, the same weights), which the converter refuses: the
checkpoint's option is renamed "scaled-dot" in a copy before converting.

How each figure is measured:
- training tokens/s: each system trains --warmup-steps + --train-steps steps without validation
  and logs every --log-every steps; the windows after warm-up give (source + target non-padding
  tokens) per second, target counted with EOS, source without specials. dragoman's metrics.jsonl
  and OpenNMT-py's "src/tgt tok/s" give that per window; JoeyNMT logs target tokens/s only, so it
  is started through a 10-line launcher that also counts each batch's source tokens (src_length
  minus the EOS JoeyNMT appends) and prints both with JoeyNMT's own window time. The figure is the
  harmonic mean of the windows (= total tokens / total time for windows of equal token counts),
  the median over --train-rounds rounds, systems alternating.
- training peak RSS: of that training process, from /usr/bin/time -v (polling /proc's VmHWM when
  it is missing); dragoman's data is prepared beforehand, so tokenizer training is not in it.
- decoding: each system translates the test set (--test-lines) greedy and with beam 5, batches of
  --batch-tokens source tokens, from the model it trained in this run: the --bleu-minutes model,
  or without one the short speed-run model (whose garbage, empty or max-length, says little about
  real decoding); with --same-weights, dragoman's model converted (above). Each round runs every
  system in turn on one line and on the whole file; decoding seconds = whole file − one line,
  which removes interpreter start-up and model loading alike for all; the median over --rounds
  rounds (left out, with a note, when it is within the start-up's jitter). Sentences/s = lines / s;
  tokens/s = output pieces of the shared SentencePiece model / s. CTranslate2 decodes OpenNMT-py's model
  converted by ct2-opennmt-py-converter (float32, int8), from a small script in the OpenNMT-py
  environment (intra_threads = --threads, batch_type "tokens"); it converts Transformers only.
- test BLEU (sacreBLEU, beam 5, whole test set): each system trains --bleu-minutes of wall-clock
  time from process start (start-up and data loading count), then gets SIGINT; JoeyNMT saves its
  weights on the interrupt, dragoman and OpenNMT-py keep their last checkpoint, saved every
  --bleu-save-every steps. With --same-weights: dragoman's model as each system decodes it.
Ratios are dragoman / peer: above 1 dragoman is faster (for RSS: uses more memory).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import sacrebleu
import sentencepiece as spm
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")  # ids 0-3 of dragoman's SentencePiece model
MAX_LEN = 100  # pieces; longer training pairs are dropped by every system
DRAGOMAN = [sys.executable, "-m", "dragoman"]  # the `dragoman` command of this Python
PEER_WEIGHTS = Path(__file__).with_name("peer_weights.py")  # dragoman's weights for the peers
SAME = "same"  # the phase (model directory) of the converted weights: --same-weights


@dataclass
class Settings:
    arch: str
    data: Path
    work: Path
    base: dict  # configs/ARCH.yaml
    threads: int
    batch_tokens: int
    warmup_steps: int
    train_steps: int
    log_every: int
    bleu_minutes: float
    bleu_save_every: int
    test_lines: int | None
    same_weights: Path | None = None  # the dragoman model every system decodes (--same-weights)

    @property
    def spm(self) -> Path:
        return self.work / "spm.model"

    @property
    def vocab(self) -> Path:
        return self.work / "vocab.txt"

    @property
    def env(self) -> dict[str, str]:
        threads = str(self.threads)
        return os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}


@dataclass
class Trained:
    rates: list[float] = field(default_factory=list)  # tokens/s of each round
    rss_mb: list[float] = field(default_factory=list)


def write_yaml(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def import_error(name: str, python: Path, code: str) -> str | None:
    """Why `code` fails in that environment ("NAME skipped: ..."), or None."""
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return f"{name} skipped: it does not import in {python.parent.parent} ({last})"


def harmonic_mean_after(windows: list[tuple[int, float]], warmup: int) -> float:
    """Tokens/s over the logged windows that end after the warm-up steps."""
    rates = [rate for step, rate in windows if step > warmup]
    if not rates:
        raise RuntimeError(f"no training log window after step {warmup}: {windows}")
    return statistics.harmonic_mean(rates)


# ---------------------------------------------------------------------------------------------
# The systems: each writes its configs and says how to train, read its log, and translate.


class System:
    name = ""
    slug = ""
    trains = True

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.dir = s.work / self.slug

    @functools.cached_property
    def missing(self) -> str | None:
        """Why this system cannot run here, or None."""
        return None

    @property
    def env(self) -> dict[str, str]:
        return self.s.env

    def train_command(self, phase: str) -> list[str]:
        raise NotImplementedError

    def windows(self, phase: str, log: str) -> list[tuple[int, float]]:
        """(last step, source + target tokens/s) of each logged training window."""
        raise NotImplementedError

    def translate_command(self, phase: str, src: Path, out: Path, beam: int) -> list[str]:
        raise NotImplementedError


class Dragoman(System):
    name, slug = "dragoman", "dragoman"

    def config(self, phase: str) -> dict:
        config = json.loads(json.dumps(self.s.base))  # a deep copy
        data = self.s.data
        config["data"].update(train=str(data / "train"), dev=None, test=None, max_len=MAX_LEN)
        speed = phase == "speed"
        config["train"].update(
            model_dir=str(self.dir / phase),
            batch_tokens=self.s.batch_tokens,
            max_steps=self.s.warmup_steps + self.s.train_steps if speed else None,
            max_minutes=None if speed else self.s.bleu_minutes + 5,  # SIGINT comes first
            log_every=self.s.log_every if speed else 100,
            validate_every=10**9 if speed else self.s.bleu_save_every,  # no dev set: saves weights
            threads=self.s.threads,
            device="cpu",
        )
        config["decode"].update(batch_tokens=self.s.batch_tokens)
        return config

    def prepare(self) -> Path:
        """`dragoman prepare` of both phases (same data section); returns the tokenizer model."""
        for phase in ("speed", "bleu"):
            path = write_yaml(self.dir / f"{phase}.yaml", self.config(phase))
            if phase == "speed":
                run([*DRAGOMAN, "prepare", str(path)], self.dir / "prepare.log", self.s.env)
            else:  # the same data section: copy the prepared data instead of preparing again
                shutil.copytree(self.dir / "speed", self.dir / "bleu", dirs_exist_ok=True)
        return self.dir / "speed" / "tokenizer.spm"

    def train_command(self, phase: str) -> list[str]:
        path = write_yaml(self.dir / f"{phase}.yaml", self.config(phase))  # --threads may change
        return [*DRAGOMAN, "train", str(path)]

    def windows(self, phase: str, log: str) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (self.dir / phase / "metrics.jsonl").read_text().splitlines()]
        return [(row["step"], row["tokens_per_s"]) for row in rows if row["kind"] == "train"]

    def translate_command(self, phase: str, src: Path, out: Path, beam: int) -> list[str]:
        decode = self.s.base["decode"]
        model = self.s.same_weights if phase == SAME else self.s.work / Dragoman.slug / phase
        return [
            *DRAGOMAN, "translate", str(model), "-i", str(src), "-o", str(out),
            "--beam", str(beam), "--batch-tokens", str(self.s.batch_tokens),
            "--length-penalty", str(decode["length_penalty"]),
            "--max-len-a", str(decode["max_len_a"]), "--max-len-b", str(decode["max_len_b"]),
        ]  # fmt: skip


class DragomanPrecision(Dragoman):
    """dragoman's model decoded in bf16 or int8 (`dragoman translate --precision`): no training."""

    trains = False

    def __init__(self, s: Settings, precision: str) -> None:
        super().__init__(s)
        self.precision, self.name, self.slug = precision, f"dragoman {precision}", f"dragoman-{precision}"
        self.dir = s.work / self.slug

    def translate_command(self, phase: str, src: Path, out: Path, beam: int) -> list[str]:
        return [*super().translate_command(phase, src, out, beam), "--precision", self.precision]


# sentencepiece 0.2.1+ dropped SetVocabulary, which JoeyNMT 2.3 calls to restrict encoding to the
# vocabulary file; ours lists every piece of the model, so restricting changes nothing.
JOEY_SHIM = """
import sys, sentencepiece
if not hasattr(sentencepiece.SentencePieceProcessor, "SetVocabulary"):
    sentencepiece.SentencePieceProcessor.SetVocabulary = lambda self, pieces: None
"""
# JoeyNMT logs target tokens/s only: count the source tokens of each window too (see docstring).
JOEY_LAUNCHER = (
    JOEY_SHIM
    + """
import joeynmt.training as T
from joeynmt.__main__ import main
step, log, src = T.TrainManager._train_step, T.TrainManager._log_scores, [0]
def counting_step(self, batch):
    src[0] += int(batch.src_length.sum()) - batch.nseqs  # without the EOS JoeyNMT appends
    return step(self, batch)
def logging(self, epoch, seconds, start_tokens, *args):
    tgt = self.stats.total_tokens - start_tokens
    print(f"WINDOW step={self.stats.steps} src={src[0]} tgt={tgt} seconds={seconds:.6f}", flush=True)
    src[0] = 0
    return log(self, epoch, seconds, start_tokens, *args)
T.TrainManager._train_step, T.TrainManager._log_scores = counting_step, logging
sys.argv = ["joeynmt", "train", sys.argv[1], "--skip-test"]
main()
"""
)

# `joeynmt translate CONFIG < SRC > OUT` (its -o option fails in 2.3: args.n_best is args.test.n_best).
JOEY_TRANSLATE = (
    JOEY_SHIM
    + """
from joeynmt.__main__ import main
sys.stdin, sys.stdout = open(sys.argv.pop(3), encoding="utf-8"), open(sys.argv.pop(3), "w", encoding="utf-8")
main()
sys.stdout.close()
"""
)
# Decoding dragoman's weights (--same-weights), JoeyNMT is not to append EOS to the source, which
# dragoman's model never saw (the source is encoded with bos=False, eos=True, a target prefix with
# bos=True).
JOEY_TRANSLATE_SAME = (
    JOEY_SHIM
    + """
import joeynmt.vocabulary as V
to_ids = V.Vocabulary.sentences_to_ids
V.Vocabulary.sentences_to_ids = lambda self, lines, bos=True, eos=True: to_ids(self, lines, bos, eos and bos)
"""
    + JOEY_TRANSLATE.removeprefix(JOEY_SHIM)
)


class JoeyNMT(System):
    name, slug = "JoeyNMT", "joeynmt"

    def __init__(self, s: Settings, python: Path) -> None:
        super().__init__(s)
        self.python = python

    @functools.cached_property
    def missing(self) -> str | None:
        if not self.python.exists():
            return f"JoeyNMT skipped: {self.python} not found (give --joeynmt PYTHON)"
        return import_error("JoeyNMT", self.python, JOEY_SHIM + "import joeynmt.training, joeynmt.prediction")

    def tiny_dev(self) -> Path:
        prefix = self.dir / "dev-tiny"
        self.dir.mkdir(parents=True, exist_ok=True)
        for lang in (self.s.base["data"]["src"], self.s.base["data"]["tgt"]):
            lines = (self.s.data / f"dev.{lang}").read_text(encoding="utf-8").splitlines()[:10]
            Path(f"{prefix}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return prefix

    def side(self, lang: str) -> dict:
        return {
            "lang": lang,
            "level": "bpe",
            "lowercase": False,
            "normalize": False,
            "max_length": MAX_LEN,
            "min_length": 1,
            "voc_file": str(self.s.vocab),
            "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": str(self.s.spm)},
        }

    def model(self) -> dict:
        m = self.s.base["model"]
        embed = {"embedding_dim": m["d_model"], "scale": m["encoder"] == "transformer"}
        if m["encoder"] == "transformer":
            layer = {"type": "transformer", "num_heads": m["heads"], "hidden_size": m["d_model"]}
            layer |= {"ff_size": m["ff"], "dropout": m["dropout"], "layer_norm": m.get("norm", "pre")}
            encoder = layer | {"num_layers": m["enc_layers"], "embeddings": embed}
            decoder = layer | {"num_layers": m["dec_layers"], "embeddings": embed}
            tied_softmax = True
        else:
            rnn = {"type": "recurrent", "rnn_type": m["encoder"], "dropout": m["dropout"]}
            encoder = rnn | {"hidden_size": m["hidden"], "bidirectional": m["bidirectional"]}
            encoder |= {"num_layers": m["enc_layers"], "embeddings": embed}
            decoder = rnn | {"rnn_type": m["decoder"], "hidden_size": m["dec_hidden"]}
            decoder |= {"num_layers": m["dec_layers"], "embeddings": embed, "hidden_dropout": m["dropout"]}
            decoder |= {"attention": m["attention"], "init_hidden": "bridge", "input_feeding": False}
            tied_softmax = False  # the attentional vector is dec_hidden wide, not d_model
        return {
            "initializer": "xavier_uniform",
            "bias_initializer": "zeros",
            "embed_initializer": "xavier_uniform",
            "tied_embeddings": True,
            "tied_softmax": tied_softmax,
            "encoder": encoder,
            "decoder": decoder,
        }

    def training(self, phase: str) -> dict:
        t = self.s.base["train"]
        optimizer, schedule = t["optimizer"], t["schedule"]
        speed = phase == "speed"
        training = {
            "random_seed": t.get("seed", 1),
            "optimizer": "adam",
            "adam_betas": list(optimizer["betas"]),
            "learning_rate": optimizer["lr"],
            "learning_rate_min": 1.0e-9,
            "weight_decay": optimizer.get("weight_decay", 0.0),
            "loss": "crossentropy",
            "label_smoothing": t["label_smoothing"],
            "normalization": "tokens",
            "clip_grad_norm": t["clip_grad_norm"],
            "batch_size": self.s.batch_tokens,
            "batch_type": "token",
            "epochs": 1000,
            "updates": self.s.warmup_steps + self.s.train_steps if speed else 10**9,
            "logging_freq": self.s.log_every if speed else 100,
            "validation_freq": 10**9,  # no validation: the weights are saved when it stops
            "keep_best_ckpts": 1,
            "shuffle": True,
            "use_cuda": False,
            "fp16": False,
            "num_workers": 0,
            "overwrite": True,
        }
        if schedule["name"] == "inverse_sqrt":
            training |= {"scheduling": "warmupinversesquareroot", "learning_rate_peak": optimizer["lr"]}
            training["learning_rate_warmup"] = schedule["warmup"]
        else:  # 2.3 refuses "no scheduler" (and its plateau passes torch 2.13 an unknown argument)
            training |= {"scheduling": "exponential", "decrease_factor": 1.0}  # lr × 1.0 per epoch
        return training

    def config(self, phase: str, ckpt: str = "latest.ckpt", beam: int = 1) -> dict:
        data = self.s.data
        specials = dict(zip(("unk", "pad", "bos", "eos"), ("<unk>", "<pad>", "<s>", "</s>")))
        symbols = {f"{k}_token": v for k, v in specials.items()}
        symbols |= {f"{k}_id": i for i, k in enumerate(specials)}
        return {
            "name": f"joeynmt-{self.s.arch}",
            "joeynmt_version": "2.3.0",
            "model_dir": str(self.dir / phase),
            "use_cuda": False,
            "data": {
                "train": str(data / "train"),
                "dev": str(self.tiny_dev()),  # JoeyNMT needs one, though it never validates here
                "dataset_type": "plain",
                "src": self.side(self.s.base["data"]["src"]),
                "trg": self.side(self.s.base["data"]["tgt"]),
                "special_symbols": symbols,
            },
            "testing": {
                "load_model": str(self.dir / phase / ckpt),
                "n_best": 1,
                "beam_size": beam,
                "beam_alpha": self.s.base["decode"]["length_penalty"] if beam > 1 else -1,
                "batch_size": self.s.batch_tokens,
                "batch_type": "token",
                "max_output_length": -1,  # 1.5 × the batch's longest source
            },
            "training": self.training(phase),
            "model": self.model(),
        }

    def train_command(self, phase: str) -> list[str]:
        path = write_yaml(self.dir / f"{phase}.yaml", self.config(phase))
        return [str(self.python), "-c", JOEY_LAUNCHER, str(path)]

    def windows(self, phase: str, log: str) -> list[tuple[int, float]]:
        pattern = r"WINDOW step=(\d+) src=(\d+) tgt=(\d+) seconds=([\d.]+)"
        return [(int(n), (int(a) + int(b)) / float(t)) for n, a, b, t in re.findall(pattern, log)]

    def convert_same(self) -> None:
        """dragoman's model as a JoeyNMT model directory, DIR/same (config.yaml, latest.ckpt, ...)."""
        command = [str(self.python), str(PEER_WEIGHTS), "joeynmt", str(self.s.same_weights)]
        run([*command, str(self.dir / SAME)], self.dir / "convert-same.log", self.env)

    def translate_command(self, phase: str, src: Path, out: Path, beam: int) -> list[str]:
        if phase == SAME:  # the converted model's config, with this run's search settings
            config = yaml.safe_load((self.dir / SAME / "config.yaml").read_text())
            config["testing"] = self.config(phase, beam=beam)["testing"]  # loads DIR/same/latest.ckpt
            launcher = JOEY_TRANSLATE_SAME
        else:
            config, launcher = self.config(phase, beam=beam), JOEY_TRANSLATE
        path = write_yaml(self.dir / f"{phase}-beam{beam}.yaml", config)
        return [str(self.python), "-c", launcher, "translate", str(path), str(src), str(out)]


class OpenNMT(System):
    name, slug = "OpenNMT-py", "onmt"

    def __init__(self, s: Settings, bin_dir: Path) -> None:
        super().__init__(s)
        self.bin = bin_dir

    @property
    def env(self) -> dict[str, str]:  # onmt_translate's torch.load predates the weights_only default
        return self.s.env | {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

    @functools.cached_property
    def missing(self) -> str | None:
        if not (self.bin / "onmt_train").exists():
            return f"OpenNMT-py skipped: {self.bin / 'onmt_train'} not found (give --onmt BIN_DIR)"
        return import_error("OpenNMT-py", self.bin / "python", "import onmt.bin.train, onmt.bin.translate")

    def model(self) -> dict:
        m = self.s.base["model"]
        if m["encoder"] == "transformer":
            return {
                "encoder_type": "transformer",
                "decoder_type": "transformer",
                "enc_layers": m["enc_layers"],
                "dec_layers": m["dec_layers"],
                "hidden_size": m["d_model"],
                "word_vec_size": m["d_model"],
                "transformer_ff": m["ff"],
                "heads": m["heads"],
                "dropout": [m["dropout"]],
                "attention_dropout": [m.get("attention_dropout", 0.0)],
                "position_encoding": True,
                "layer_norm": "standard",  # pre-norm
                "share_decoder_embeddings": True,
            }
        return {
            "encoder_type": "brnn" if m["bidirectional"] else "rnn",
            "decoder_type": "rnn",
            "rnn_type": m["encoder"].upper(),
            "enc_layers": m["enc_layers"],
            "dec_layers": m["dec_layers"],
            "enc_hid_size": m["hidden"] * (2 if m["bidirectional"] else 1),  # both directions
            "dec_hid_size": m["dec_hidden"],
            "word_vec_size": m["d_model"],
            "global_attention": {"bahdanau": "mlp", "luong_dot": "dot"}.get(m["attention"], "general"),
            "input_feed": int(m.get("input_feeding", False)),
            "bridge": True,
            "dropout": [m["dropout"]],
            "share_decoder_embeddings": False,  # the attentional vector is dec_hid_size wide
        }

    def optimizer(self) -> dict:
        t = self.s.base["train"]
        optimizer, schedule = t["optimizer"], t["schedule"]
        options = {
            "optim": "adam",
            "adam_beta1": optimizer["betas"][0],
            "adam_beta2": optimizer["betas"][1],
            "learning_rate": optimizer["lr"],
            "decay_method": "none",
            "label_smoothing": t["label_smoothing"],
            "max_grad_norm": t["clip_grad_norm"],
            "normalization": "tokens",
            "param_init": 0.0,
            "param_init_glorot": True,
            "seed": t.get("seed", 1),
        }
        if schedule["name"] == "inverse_sqrt":  # noam peaks at lr × (d_model × warmup) ** -0.5
            warmup, d_model = schedule["warmup"], self.s.base["model"]["d_model"]
            options |= {"decay_method": "noam", "warmup_steps": warmup}
            options["learning_rate"] = optimizer["lr"] * (d_model * warmup) ** 0.5
        return options

    def config(self, phase: str) -> dict:
        data, base = self.s.data, self.s.base["data"]
        speed = phase == "speed"
        return {
            "save_data": str(self.dir / phase),
            "src_vocab": str(self.s.vocab),
            "tgt_vocab": str(self.s.vocab),
            "share_vocab": True,
            "share_embeddings": True,
            "src_subword_model": str(self.s.spm),
            "tgt_subword_model": str(self.s.spm),
            "src_seq_length": MAX_LEN,
            "tgt_seq_length": MAX_LEN,
            "data": {
                "corpus_1": {
                    "path_src": str(data / f"train.{base['src']}"),
                    "path_tgt": str(data / f"train.{base['tgt']}"),
                    "transforms": ["sentencepiece", "filtertoolong"],
                }
            },
            **self.model(),
            **self.optimizer(),
            "batch_type": "tokens",
            "batch_size": self.s.batch_tokens,
            "accum_count": [1],
            "num_workers": 0,  # no DataLoader processes: --threads is all the parallelism
            "world_size": 1,
            "gpu_ranks": [],
            "train_steps": self.s.warmup_steps + self.s.train_steps if speed else 10**8,
            "report_every": self.s.log_every if speed else 100,
            "save_checkpoint_steps": self.s.warmup_steps + self.s.train_steps
            if speed
            else self.s.bleu_save_every,
            "keep_checkpoint": 2,
            "save_model": str(self.dir / phase / "model"),
        }

    def checkpoint(self, phase: str) -> Path:
        if phase == SAME:
            return self.dir / SAME / "model.pt"
        saved = sorted((self.dir / phase).glob("model_step_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
        if not saved:
            raise RuntimeError(f"OpenNMT-py saved no checkpoint in {self.dir / phase}")
        return saved[-1]

    def train_command(self, phase: str) -> list[str]:
        shutil.rmtree(self.dir / phase, ignore_errors=True)
        path = write_yaml(self.dir / f"{phase}.yaml", self.config(phase))
        return [str(self.bin / "onmt_train"), "-config", str(path)]

    def convert_same(self) -> None:
        """dragoman's model as an OpenNMT-py checkpoint, DIR/same/model.pt."""
        command = [str(self.bin / "python"), str(PEER_WEIGHTS), "onmt", str(self.s.same_weights)]
        run([*command, str(self.checkpoint(SAME))], self.dir / "convert-same.log", self.env)

    def windows(self, phase: str, log: str) -> list[tuple[int, float]]:
        pattern = r"Step\s+(\d+)/\s*\d+;.*?(\d+)/\s*(\d+) tok/s;"
        return [(int(n), float(a) + float(b)) for n, a, b in re.findall(pattern, log)]

    def translate_command(self, phase: str, src: Path, out: Path, beam: int) -> list[str]:
        decode = self.s.base["decode"]
        limit = int(decode["max_len_a"] * MAX_LEN + decode["max_len_b"])
        return [
            str(self.bin / "onmt_translate"), "-model", str(self.checkpoint(phase)),
            "-src", str(src), "-output", str(out), "-gpu", "-1",
            "-beam_size", str(beam), "-length_penalty", "wu" if beam > 1 else "none",
            "-alpha", str(decode["length_penalty"]),
            "-batch_type", "tokens", "-batch_size", str(self.s.batch_tokens),
            "-max_length", str(limit), "-max_length_ratio", str(decode["max_len_a"]),
            "-transforms", "sentencepiece",
            "-src_subword_model", str(self.s.spm), "-tgt_subword_model", str(self.s.spm),
        ]  # fmt: skip


CT2_TRANSLATE = """
import sys, ctranslate2, sentencepiece
model, spm, src, out, beam, threads, batch_tokens, alpha, limit, max_input = sys.argv[1:]
sp = sentencepiece.SentencePieceProcessor(model_file=spm)
translator = ctranslate2.Translator(model, device="cpu", intra_threads=int(threads), inter_threads=1)
lines = open(src, encoding="utf-8").read().splitlines()
results = translator.translate_batch(
    sp.encode(lines, out_type=str), max_batch_size=int(batch_tokens), batch_type="tokens",
    beam_size=int(beam), length_penalty=float(alpha), max_decoding_length=int(limit),
    max_input_length=int(max_input),
)
with open(out, "w", encoding="utf-8") as f:
    f.writelines(sp.decode(r.hypotheses[0]) + "\\n" for r in results)
"""


CT2_RENAME = """
import sys, torch
checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
checkpoint["opt"].self_attn_type = "scaled-dot"
torch.save(checkpoint, sys.argv[2])
"""


class CTranslate2(System):
    trains = False

    def __init__(self, s: Settings, onmt: OpenNMT, quantization: str) -> None:
        self.name, self.slug = f"CT2 {quantization}", f"ct2-{quantization}"
        super().__init__(s)
        self.onmt, self.quantization = onmt, quantization

    @functools.cached_property
    def missing(self) -> str | None:
        if self.onmt.missing:
            return f"{self.name} skipped: it decodes OpenNMT-py's model, and {self.onmt.missing}"
        if not (self.onmt.bin / "ct2-opennmt-py-converter").exists():
            return f"{self.name} skipped: no ct2-opennmt-py-converter in {self.onmt.bin}"
        if self.s.base["model"]["encoder"] != "transformer":
            return f"{self.name} skipped: CTranslate2 converts only Transformers from OpenNMT-py"
        return None

    def convert(self, phase: str) -> None:
        out = self.dir / phase
        shutil.rmtree(out, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        # OpenNMT-py 3.5 trains with self_attn_type scaled-dot-flash (torch's fused attention, the
        # same weights and math); the converter accepts only the name "scaled-dot".
        renamed = self.dir / f"{phase}-onmt.pt"
        rename = [
            str(self.onmt.bin / "python"),
            "-c",
            CT2_RENAME,
            str(self.onmt.checkpoint(phase)),
            str(renamed),
        ]
        run(rename, self.dir / f"rename-{phase}.log", self.s.env)
        command = [str(self.onmt.bin / "ct2-opennmt-py-converter"), "--model_path"]
        command += [str(renamed), "--output_dir", str(out)]
        if self.quantization != "float32":
            command += ["--quantization", self.quantization]
        command.append("--unsafe_deserialization")  # OpenNMT-py pickles its options; our own file
        run(command, self.dir / f"convert-{phase}.log", self.s.env)

    def translate_command(self, phase: str, src: Path, out: Path, beam: int) -> list[str]:
        decode = self.s.base["decode"]
        limit = int(decode["max_len_a"] * MAX_LEN + decode["max_len_b"])
        args = [self.dir / phase, self.s.spm, src, out, beam, self.s.threads, self.s.batch_tokens]
        args += [decode["length_penalty"] if beam > 1 else 0.0, limit, MAX_LEN]  # inputs cut as dragoman's
        return [str(self.onmt.bin / "python"), "-c", CT2_TRANSLATE, *map(str, args)]


# ---------------------------------------------------------------------------------------------
# Running processes: wall time, peak RSS, a wall-clock deadline.


def run(command: list[str], log: Path, env: dict, deadline_s: float | None = None) -> tuple[float, float]:
    """Run `command` (output to `log`); returns (seconds, peak RSS in MB). After `deadline_s` the
    process group gets SIGINT (and SIGKILL a minute later if it has not stopped)."""
    timer = Path("/usr/bin/time").exists()  # GNU time: exact peak RSS; else poll /proc
    rss_file = log.with_suffix(".rss")
    if timer:
        command = ["/usr/bin/time", "-v", "-o", str(rss_file), *command]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
        hwm = [0.0]
        poller = None if timer else threading.Thread(target=_poll_hwm, args=(process, hwm), daemon=True)
        if poller:
            poller.start()
        try:
            process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        except BaseException:  # the benchmark is interrupted: stop the process group it started
            os.killpg(process.pid, signal.SIGKILL)
            raise
    seconds = time.perf_counter() - started
    if process.returncode != 0 and deadline_s is None:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"exit status {process.returncode}, see {log}:\n{tail}")
    return seconds, read_peak_rss(log) if timer else hwm[0]


def read_peak_rss(log: Path) -> float:
    """Peak RSS in MB that GNU time wrote beside a command's log."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log.with_suffix(".rss").read_text())
    return int(match[1]) / 1024 if match else float("nan")


def _default_sigint() -> None:
    """In the child: SIGINT as usual, even when this script runs in the background of a shell
    (which ignores SIGINT there, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _poll_hwm(process: subprocess.Popen, hwm: list[float]) -> None:
    """VmHWM (peak RSS) of `process`, read every 50 ms until it exits."""
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            hwm[0] = max(hwm[0], int(match[1]) / 1024) if match else hwm[0]
        except OSError:
            break
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# The three phases: shared tokenizer, training, decoding.


def shared_tokenizer(s: Settings, dragoman: Dragoman) -> None:
    """dragoman's SentencePiece model, and a vocabulary file of its pieces for the peers."""
    shutil.copy(dragoman.prepare(), s.spm)
    sp = spm.SentencePieceProcessor(model_file=str(s.spm))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert tuple(pieces[:4]) == SPECIALS, pieces[:4]
    s.vocab.write_text("".join(p + "\n" for p in pieces[4:]))  # each peer adds its own specials


def measure_training(systems: list[System], s: Settings, rounds: int, reuse: bool) -> dict[str, Trained]:
    """Training tokens/s and peak RSS of each round; with `reuse`, read from an earlier run's logs."""
    results = {system.name: Trained() for system in systems}
    for round_ in range(rounds):
        for system in systems:
            log = system.dir / f"train-speed-{round_}.log"
            if reuse and not log.exists():  # (--same-weights: the peers need not have trained)
                continue
            if reuse:
                rss = read_peak_rss(log)
            else:
                print(
                    f"training {system.name} (round {round_ + 1}/{rounds}) ...", file=sys.stderr, flush=True
                )
                _, rss = run(system.train_command("speed"), log, system.env)
            rate = harmonic_mean_after(
                system.windows("speed", log.read_text(errors="replace")), s.warmup_steps
            )
            results[system.name].rates.append(rate)
            results[system.name].rss_mb.append(rss)
    return results


def train_for_bleu(systems: list[System], s: Settings, parallel: bool) -> None:
    """Each system trains for --bleu-minutes: one after the other with --threads threads, or
    (--bleu-parallel) all at once with one thread each, so that each has one core of the same
    machine for the same minutes."""
    threads = s.threads
    if parallel:
        s.threads = 1
    jobs = [(system, system.train_command("bleu"), system.env) for system in systems]
    s.threads = threads

    def train(job) -> None:
        system, command, env = job
        print(f"training {system.name} for {s.bleu_minutes} min ...", file=sys.stderr, flush=True)
        run(command, system.dir / "train-bleu.log", env, deadline_s=60 * s.bleu_minutes)

    with ThreadPoolExecutor(max_workers=len(jobs) if parallel else 1) as pool:
        list(pool.map(train, jobs))


def measure_decoding(
    systems: list[System], s: Settings, phase: str, src: Path, rounds: int, limit_s: float | None
) -> tuple[dict, dict, list[str]]:
    """Median decoding seconds per (system, beam), start-up removed; the last outputs; notes.

    A median that is not clearly above the start-up time's own jitter (1 s, or a tenth of the
    start-up) is left out: it would be a ratio of noise (a --quick model that stops at once).
    A decoding still running after `limit_s` is stopped and left out, with a note."""
    one_line = s.work / "one-line.txt"
    one_line.write_text(src.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    seconds: dict[tuple[str, int], list[float]] = {}
    startups: dict[str, list[float]] = {}
    outputs: dict[tuple[str, int], Path] = {}
    stopped: set[tuple[str, int]] = set()  # past --decode-limit once: not run again
    for round_ in range(rounds):
        for system in systems:
            print(
                f"decoding with {system.name} (round {round_ + 1}/{rounds}) ...", file=sys.stderr, flush=True
            )
            logs = system.dir / "decode"
            one = system.translate_command(phase, one_line, logs / "one-line.out", 1)
            startup, _ = run(one, logs / "one-line.log", system.env)
            startups.setdefault(system.name, []).append(startup)
            for beam in (1, 5):
                if (system.name, beam) in stopped:
                    continue
                out = logs / f"test-beam{beam}.out"
                command = system.translate_command(phase, src, out, beam)
                elapsed, _ = run(command, logs / f"beam{beam}.log", system.env, deadline_s=limit_s)
                if limit_s is not None and elapsed >= limit_s:
                    stopped.add((system.name, beam))
                    continue
                seconds.setdefault((system.name, beam), []).append(elapsed - startup)
                outputs[system.name, beam] = out
    medians, notes = {}, []
    for name, beam in sorted(stopped):
        notes.append(f"{name}, beam {beam}: stopped after --decode-limit {limit_s:g} s, left out")
    for (name, beam), values in seconds.items():
        startup = statistics.median(startups[name])
        median = statistics.median(values)
        if median > max(1.0, 0.1 * startup):
            medians[name, beam] = median
        else:
            notes.append(
                f"{name}, beam {beam}: decoding took {median:.2f} s beyond its {startup:.1f} s start-up, "
                "within the start-up's jitter: left out"
            )
    return medians, outputs, notes


# ---------------------------------------------------------------------------------------------
# The table.


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def build_rows(systems, trained, seconds, outputs, s: Settings, src: Path, ref: Path | None) -> dict:
    """Figure name → {system name: value}."""
    sp = spm.SentencePieceProcessor(model_file=str(s.spm))
    lines = len(src.read_text(encoding="utf-8").splitlines())
    rows: dict[str, dict[str, float]] = {
        "train tok/s": {n: statistics.median(t.rates) for n, t in trained.items() if t.rates},
        "train peak RSS MB": {n: max(t.rss_mb) for n, t in trained.items() if t.rss_mb},
    }
    for beam, label in ((1, "greedy"), (5, "beam-5")):
        rows[f"{label} sent/s"], rows[f"{label} tok/s"] = {}, {}
        for system in systems:
            if (system.name, beam) not in seconds:
                continue
            hyps = outputs[system.name, beam].read_text(encoding="utf-8").splitlines()
            tokens = sum(len(ids) for ids in sp.encode(hyps))
            rows[f"{label} sent/s"][system.name] = lines / seconds[system.name, beam]
            rows[f"{label} tok/s"][system.name] = tokens / seconds[system.name, beam]
    if ref is not None:
        refs = ref.read_text(encoding="utf-8").splitlines()
        label = f"after {s.bleu_minutes:g} min" if s.same_weights is None else "of dragoman's model"
        bleu = rows[f"test BLEU {label}"] = {}
        for system in systems:
            if (system.name, 5) in outputs:
                hyps = outputs[system.name, 5].read_text(encoding="utf-8").splitlines()
                bleu[system.name] = sacrebleu.corpus_bleu(hyps, [refs]).score
    return rows


def table(rows: dict, names: list[str]) -> str:
    peers = [n for n in names if not n.startswith("dragoman")]
    header = ["figure", *names, *(f"dragoman/{p}" for p in peers)]
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for figure, values in rows.items():
        if not values:  # (--reuse --same-weights where the peers never trained)
            continue
        digits = 1 if ("BLEU" in figure or "sent/s" in figure) else 0
        cells = [fmt(values.get(n), digits) for n in names]
        base = values.get("dragoman")
        ratios = [f"{base / values[p]:.2f}" if base is not None and values.get(p) else "-" for p in peers]
        out.append("| " + " | ".join([figure, *cells, *ratios]) + " |")
    return "\n".join(out)


def precision_table(rows: dict, names: list[str]) -> str:
    """The decoding figures of dragoman in each --precision over each peer's (float32 unless named)."""
    ours = [n for n in names if n.startswith("dragoman")]
    peers = [n for n in names if not n.startswith("dragoman")]
    header = ["figure", "dragoman", "value", *(f"over {p}" for p in peers)]
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for figure, values in rows.items():
        if figure.startswith("train"):
            continue
        for name in ours:
            if values.get(name) is None:
                continue
            ratios = [f"{values[name] / values[p]:.2f}" if values.get(p) else "-" for p in peers]
            digits = 1 if ("BLEU" in figure or "sent/s" in figure) else 0
            out.append("| " + " | ".join([figure, name, fmt(values[name], digits), *ratios]) + " |")
    return "\n".join(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=["transformer", "lstm-bahdanau"], default="transformer")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ui-en-de")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dragoman-speed"))
    parser.add_argument("--out", type=Path, help="Markdown file (default: WORK_DIR/ARCH.md)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--warmup-steps", type=int, default=20, help="untimed training steps")
    parser.add_argument("--train-steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--log-every", type=int, default=10, help="training log window, steps")
    parser.add_argument("--train-rounds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="decoding rounds (median)")
    parser.add_argument("--bleu-minutes", type=float, default=20.0, help="0 = no BLEU training")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="no training: the figures and models of an earlier run in --work-dir (decoding again)",
    )
    parser.add_argument("--decode-limit", type=float, help="seconds; stop a decoding that takes longer")
    parser.add_argument(
        "--precisions",
        nargs="*",
        choices=["bf16", "int8"],
        default=[],
        help="also decode dragoman's model in these precisions (translate --precision), one more table",
    )
    parser.add_argument(
        "--same-weights",
        action="store_true",
        help="every system decodes dragoman's model (the BLEU one, else the speed one), converted",
    )
    parser.add_argument(
        "--bleu-parallel",
        action="store_true",
        help="train the BLEU models all at once, one thread each (instead of one after the other)",
    )
    parser.add_argument("--bleu-save-every", type=int, default=50, help="checkpoint interval, steps")
    parser.add_argument("--test-lines", type=int, help="only the first N test lines (default: all)")
    parser.add_argument("--joeynmt", type=Path, default=Path("/work/peers/joeynmt/bin/python"))
    parser.add_argument("--onmt", type=Path, default=Path("/work/peers/onmt/bin"), help="its bin/")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a wiring check: 10 + 20 training steps, 200 test lines, 1 round, no BLEU",
    )
    args = parser.parse_args()
    if args.quick:
        args.warmup_steps, args.train_steps, args.log_every = 10, 20, 10
        args.rounds, args.bleu_minutes, args.test_lines = 1, 0.0, args.test_lines or 200
    if args.same_weights and args.arch != "transformer":
        parser.error("--same-weights converts Transformers only")
    if args.warmup_steps % args.log_every or args.train_steps % args.log_every:
        parser.error("--warmup-steps and --train-steps must be multiples of --log-every")
    return args


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `run` then stops its process group
    args = parse_args()
    base = yaml.safe_load((ROOT / "configs" / f"{args.arch}.yaml").read_text())
    work = args.work_dir.resolve() / args.arch
    work.mkdir(parents=True, exist_ok=True)
    s = Settings(
        args.arch, args.data.resolve(), work, base, args.threads, args.batch_tokens, args.warmup_steps,
        args.train_steps, args.log_every, args.bleu_minutes, args.bleu_save_every, args.test_lines,
    )  # fmt: skip
    dragoman = Dragoman(s)
    onmt = OpenNMT(s, args.onmt)
    candidates = [
        dragoman,
        JoeyNMT(s, args.joeynmt),
        onmt,
        CTranslate2(s, onmt, "float32"),
        CTranslate2(s, onmt, "int8"),
        *(DragomanPrecision(s, precision) for precision in args.precisions),
    ]
    notes = [c.missing for c in candidates if c.missing]
    systems = [c for c in candidates if not c.missing]
    for note in notes:
        print(note, file=sys.stderr)

    if not args.reuse:  # (preparing again would copy the speed run's weights over the BLEU run's)
        shared_tokenizer(s, dragoman)
    trainers = [system for system in systems if system.trains]
    trained = measure_training(trainers, s, args.train_rounds, args.reuse)
    phase = "bleu" if args.bleu_minutes > 0 else "speed"
    if phase == "bleu" and not args.reuse:
        train_for_bleu(trainers, s, args.bleu_parallel)
    decoded = phase  # the models decoded: each system's own, or with --same-weights dragoman's
    if args.same_weights:
        if not (dragoman.dir / phase / "model.safetensors").exists():
            phase = "speed"  # (--reuse of a run without BLEU training)
        s.same_weights, decoded = dragoman.dir / phase, SAME
        for system in systems:
            if isinstance(system, (OpenNMT, JoeyNMT)):
                print(f"converting dragoman's model for {system.name} ...", file=sys.stderr, flush=True)
                system.convert_same()
    for system in systems:
        if isinstance(system, CTranslate2):
            if decoded == SAME or not (args.reuse and (system.dir / decoded).exists()):
                system.convert(decoded)

    src_lang, tgt_lang = base["data"]["src"], base["data"]["tgt"]
    src, ref = s.data / f"test.{src_lang}", s.data / f"test.{tgt_lang}"
    if args.test_lines:
        for path, name in ((src, "src"), (ref, "ref")):
            lines = path.read_text(encoding="utf-8").splitlines()[: args.test_lines]
            (work / f"test.{name}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        src, ref = work / "test.src", work / "test.ref"
    seconds, outputs, decode_notes = measure_decoding(
        systems, s, decoded, src, args.rounds, args.decode_limit
    )
    notes += decode_notes
    rows = build_rows(systems, trained, seconds, outputs, s, src, ref if phase == "bleu" else None)

    model = "short speed-run model" if phase == "speed" else f"{args.bleu_minutes:g}-minute model"
    if args.same_weights:
        model = f"dragoman's {model}, converted for every peer (--same-weights)"
    else:
        model = f"each system's own {model}" + (" (garbage output)" if phase == "speed" else "")
    summary = (
        f"{args.arch} (configs/{args.arch}.yaml) on {s.data.name}, {args.threads} threads, "
        f"{args.batch_tokens}-token batches; training {args.warmup_steps} + {args.train_steps} steps "
        f"(median of {args.train_rounds}); decoding {len(src.read_text().splitlines())} test lines with "
        f"{model}, median of {args.rounds}; torch {version('torch')} everywhere"
    )
    names = [x.name for x in systems]
    parts = [summary, "\n".join(f"- {note}" for note in notes), table(rows, names)]
    if args.precisions:
        parts.append(precision_table(rows, names))
    text = "\n\n".join(part for part in parts if part)
    print(text)
    out = args.out or work / f"{args.arch}.md"
    out.write_text(text + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
