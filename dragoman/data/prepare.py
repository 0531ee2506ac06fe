"""`dragoman prepare`: check the text files, train the tokenizers, store token ids once.

The task decides what an example is: a source/target pair (seq2seq), a text and its label from two
files or a CSV (classify, whose labels are saved as labels.json), or one document (lm), optionally
joined with the others and cut into blocks of data.block_size tokens.

Everything lands in the model directory: the tokenizer files beside the config, the id shards
under `data/`, and `data/prepared.json` with the counts of what was skipped and why. Training
calls `prepare` itself and reuses its output while the data section of the config is unchanged.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dragoman.config import Config, DataConfig
from dragoman.data.batches import Batches, LabelBatches, PairBatches, TextBatches
from dragoman.data.labels import Labels
from dragoman.data.shards import Shard, ShardWriter
from dragoman.data.text import check_parallel, check_readable, iter_csv, iter_lines, iter_pairs
from dragoman.data.tokenizers import BOS, EOS, Tokenizer, load_tokenizer, train_tokenizer
from dragoman.errors import DragomanError
from dragoman.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger("dragoman")
SPLITS = ("train", "dev", "test")
CHUNK = 10_000  # lines encoded per call (sentencepiece batches them in C++)


@dataclass
class SplitReport:
    read: int = 0
    empty: int = 0  # a side empty or only whitespace: skipped
    too_long: int = 0  # dropped (train, too_long: drop) or truncated to max_len
    kept: int = 0
    blocks: int = 0  # lm with data.block_size: the blocks the kept documents were cut into

    def describe(self, split: str, config: Config) -> str:
        data = config.data
        action = "dropped" if split == "train" and data.too_long == "drop" else "truncated"
        unit = {"seq2seq": "pairs", "classify": "labelled texts"}.get(config.task, "documents")
        text = f"{split}: {self.read} {unit} read, {self.empty} empty or whitespace-only skipped, "
        if data.block_size is not None:
            return (
                text
                + f"{self.kept} kept, joined and cut into {self.blocks} blocks of {data.block_size} tokens"
            )
        return text + f"{self.too_long} longer than {data.max_len} tokens {action}, {self.kept} kept"


def tokenizer_prefixes(model_dir: Path, data: DataConfig) -> tuple[Path, Path]:
    if data.joint_vocab:
        return model_dir / "tokenizer", model_dir / "tokenizer"
    return model_dir / "src_tokenizer", model_dir / "tgt_tokenizer"


def load_tokenizers(model_dir: Path, config: Config) -> tuple[Tokenizer, Tokenizer | Labels]:
    """The source and target tokenizers; a classifier's target side is its Labels."""
    src, tgt = tokenizer_prefixes(model_dir, config.data)
    src_tok = load_tokenizer(src)
    if config.task == "classify":
        return src_tok, Labels.load(model_dir / "labels.json")
    return src_tok, src_tok if tgt == src else load_tokenizer(tgt)


def _fingerprint(data: DataConfig) -> str:
    """The data section plus each text file's size and modification time: editing a corpus
    without touching the config still prepares it again."""
    stamps = []
    for split in SPLITS:
        for path in data.files(split) or ():
            stat = path.stat() if path.exists() else None
            stamps.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{path}:missing")
    text = data.model_dump_json() + "\n".join(stamps)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def examples(config: Config, split: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each example of a split: [source, target], [text, label], or [text]."""
    data = config.data
    files = data.files(split)
    if data.format == "csv":
        return iter_csv(files[0], [data.text_column, data.label_column])
    lines = iter_pairs(*files) if len(files) == 2 else ((line,) for line in iter_lines(files[0]))
    return ((number, list(fields)) for number, fields in enumerate(lines, start=1))


def _check_files(config: Config, split: str) -> None:
    files = config.data.files(split)
    if len(files) == 2:
        check_parallel(*files)
    else:
        check_readable(files[0])
        if config.data.format == "csv":  # the header names the columns
            next(examples(config, split), None)


def _texts(config: Config, side: int) -> Iterator[str]:
    return (fields[side] for _, fields in examples(config, "train") if fields[side].strip())


def train_tokenizers(config: Config, model_dir: Path) -> tuple[Tokenizer, Tokenizer | Labels]:
    """Fit the tokenizer(s) on the training text, and a classifier's labels; save them."""
    data = config.data
    src_cfg, tgt_cfg = data.tokenizer, data.tgt_tokenizer or data.tokenizer
    seed = config.train.seed

    def fit(cfg, texts) -> Tokenizer:  # subword models train on a seeded sample of `texts`
        return train_tokenizer(
            cfg.kind,
            texts,
            cfg.vocab_size,
            min_freq=cfg.min_freq,
            sample_size=cfg.sample_size,
            seed=seed,
        )

    src_prefix, tgt_prefix = tokenizer_prefixes(model_dir, data)
    if config.task != "seq2seq":  # one side of text
        src_tok = tgt = fit(src_cfg, _texts(config, 0))
        if config.task == "classify":
            tgt = Labels.from_data(
                f[1].strip() for _, f in examples(config, "train") if f[0].strip() and f[1].strip()
            )
            tgt.save(model_dir / "labels.json")
    elif data.joint_vocab:
        src_tok = tgt = fit(src_cfg, itertools.chain(_texts(config, 0), _texts(config, 1)))
    else:
        src_tok, tgt = fit(src_cfg, _texts(config, 0)), fit(tgt_cfg, _texts(config, 1))
        tgt.save(tgt_prefix)
    src_tok.save(src_prefix)
    return src_tok, tgt


class _Blocks:
    """Joins documents (BOS doc EOS …) and writes blocks of `size` + 1 tokens that overlap by one,
    so block i trains on predicting tokens i·size + 1 … (i + 1)·size of the stream."""

    def __init__(self, writer: ShardWriter, size: int) -> None:
        self.writer, self.size, self.stream = writer, size, []

    def extend(self, docs: list[list[int]]) -> None:
        for doc in docs:
            self.stream.extend([BOS, *doc, EOS])
        full = (len(self.stream) - 1) // self.size
        self.writer.extend(self.stream[i * self.size : (i + 1) * self.size + 1] for i in range(full))
        self.stream = self.stream[full * self.size :]

    def close(self) -> int:
        """Write the last, shorter block; returns how many blocks were written."""
        if len(self.stream) >= 2:
            self.writer.extend([self.stream])
        return self.writer.close()


def _encode_split(
    split: str, config: Config, src_tok: Tokenizer, tgt: Tokenizer | Labels, out: Path
) -> SplitReport:
    """Token ids of a split into shards (and a classifier's class ids into {split}.labels.npy)."""
    data, task = config.data, config.task
    max_len, report = data.max_len, SplitReport()
    drop = split == "train" and data.too_long == "drop"
    src_writer = ShardWriter(out / f"{split}.src")
    tgt_writer = ShardWriter(out / f"{split}.tgt") if task == "seq2seq" else None
    if data.block_size is not None:
        src_writer, max_len = _Blocks(src_writer, data.block_size), None
    labels = array("i")  # class ids, 4 bytes each however many texts there are
    path = data.files(split)[-1]  # the file a label comes from
    rows = examples(config, split)
    while chunk := list(itertools.islice(rows, CHUNK)):
        report.read += len(chunk)
        nonempty = [(n, f) for n, f in chunk if all(map(str.strip, f))]
        report.empty += len(chunk) - len(nonempty)
        src_ids = src_tok.encode_batch([f[0] for _, f in nonempty])
        tgt_ids = tgt.encode_batch([f[1] for _, f in nonempty]) if tgt_writer else [[]] * len(nonempty)
        kept_src, kept_tgt = [], []
        for (number, fields), s, t in zip(nonempty, src_ids, tgt_ids):
            if max_len is not None and (len(s) > max_len or len(t) > max_len):
                report.too_long += 1
                if drop:
                    continue
                s, t = s[:max_len], t[:max_len]
            if task == "classify":
                labels.append(tgt.id(fields[1].strip(), path, number))
            kept_src.append(s)
            kept_tgt.append(t)
        report.kept += len(kept_src)
        src_writer.extend(kept_src)
        if tgt_writer:
            tgt_writer.extend(kept_tgt)
    blocks = src_writer.close()
    if tgt_writer:
        tgt_writer.close()
    if data.block_size is not None:
        report.blocks = blocks
    if task == "classify":
        buffer = io.BytesIO()
        np.save(buffer, np.frombuffer(labels, dtype=np.int32), allow_pickle=False)
        atomic_write_bytes(out / f"{split}.labels.npy", buffer.getvalue())
    return report


def prepare(config: Config, force: bool = False) -> dict[str, SplitReport]:
    """Tokenizers and id shards for every split the config names; reused when up to date."""
    model_dir = Path(config.train.model_dir)
    out = model_dir / "data"
    marker = out / "prepared.json"
    if not force and marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("fingerprint") == _fingerprint(config.data):
            return {split: SplitReport(**counts) for split, counts in saved["splits"].items()}
    for split in SPLITS:  # check every file before spending time on any
        if config.data.files(split) is not None:
            _check_files(config, split)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fix = "set train.model_dir to a directory this user can create and write"
        raise DragomanError(f"cannot create ({error.strerror})", file=out, fix=fix) from None
    src_tok, tgt_tok = train_tokenizers(config, model_dir)
    reports = {}
    for split in SPLITS:
        if config.data.files(split) is not None:
            reports[split] = _encode_split(split, config, src_tok, tgt_tok, out)
            log.info(reports[split].describe(split, config))
    if reports["train"].kept == 0:
        raise DragomanError(
            "no training pairs left after cleaning",
            file=config.data.files("train")[0],
            fix="check data.max_len and the files",
        )
    record = {
        "fingerprint": _fingerprint(config.data),
        "splits": {k: asdict(v) for k, v in reports.items()},
    }
    atomic_write_text(marker, json.dumps(record, indent=2))
    return reports


def load_shards(config: Config, split: str) -> tuple[Shard, Shard]:
    out = Path(config.train.model_dir) / "data"
    return Shard(out / f"{split}.src"), Shard(out / f"{split}.tgt")


def load_batches(config: Config, split: str, batch_tokens: int) -> Batches:
    """The prepared examples of a split, as the batches of the config's task."""
    out, seed = Path(config.train.model_dir) / "data", config.train.seed
    if config.task == "seq2seq":
        return PairBatches(*load_shards(config, split), batch_tokens, seed)
    text = Shard(out / f"{split}.src")
    if config.task == "lm":
        return TextBatches(text, batch_tokens, seed, blocks=config.data.block_size is not None)
    labels = np.load(out / f"{split}.labels.npy", allow_pickle=False)
    if len(labels) != len(text):
        raise DragomanError(
            "prepared labels do not match the texts", file=out, fix="run `dragoman prepare CONFIG` again"
        )
    return LabelBatches(text, labels, batch_tokens, seed)
