"""`dragoman prepare`: check the text files, train the tokenizers, store token ids once.

Everything lands in the model directory: the tokenizer files beside the config, the id shards
under `data/`, and `data/prepared.json` with the counts of what was skipped and why. Training
calls `prepare` itself and reuses its output while the data section of the config is unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from dragoman.config import Config, DataConfig
from dragoman.data.shards import Shard, ShardWriter
from dragoman.data.text import check_parallel, iter_lines, iter_pairs
from dragoman.data.tokenizers import Tokenizer, load_tokenizer, train_tokenizer
from dragoman.errors import DragomanError
from dragoman.io import atomic_write_text

log = logging.getLogger("dragoman")
SPLITS = ("train", "dev", "test")
CHUNK = 10_000  # lines encoded per call (sentencepiece batches them in C++)


@dataclass
class SplitReport:
    read: int = 0
    empty: int = 0  # a side empty or only whitespace: skipped
    too_long: int = 0  # dropped (train, too_long: drop) or truncated to max_len
    kept: int = 0

    def describe(self, split: str, max_len: int, too_long: str = "drop") -> str:
        action = "dropped" if split == "train" and too_long == "drop" else "truncated"
        return (
            f"{split}: {self.read} pairs read, {self.empty} empty or whitespace-only skipped, "
            f"{self.too_long} longer than {max_len} tokens {action}, {self.kept} kept"
        )


def tokenizer_prefixes(model_dir: Path, data: DataConfig) -> tuple[Path, Path]:
    if data.joint_vocab:
        return model_dir / "tokenizer", model_dir / "tokenizer"
    return model_dir / "src_tokenizer", model_dir / "tgt_tokenizer"


def load_tokenizers(model_dir: Path, data: DataConfig) -> tuple[Tokenizer, Tokenizer]:
    src, tgt = tokenizer_prefixes(model_dir, data)
    src_tok = load_tokenizer(src)
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


def _nonempty_lines(path: Path) -> Iterator[str]:
    return (line for line in iter_lines(path) if line.strip())


def train_tokenizers(config: Config, model_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    data = config.data
    src_path, tgt_path = data.files("train")
    check_parallel(src_path, tgt_path)
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
    if data.joint_vocab:
        src_tok = tgt_tok = fit(
            src_cfg, itertools.chain(_nonempty_lines(src_path), _nonempty_lines(tgt_path))
        )
    else:
        src_tok = fit(src_cfg, _nonempty_lines(src_path))
        tgt_tok = fit(tgt_cfg, _nonempty_lines(tgt_path))
        tgt_tok.save(tgt_prefix)
    src_tok.save(src_prefix)
    return src_tok, tgt_tok


def _encode_split(
    split: str, config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, out: Path
) -> SplitReport:
    src_path, tgt_path = config.data.files(split)
    max_len, report = config.data.max_len, SplitReport()
    src_writer, tgt_writer = ShardWriter(out / f"{split}.src"), ShardWriter(out / f"{split}.tgt")
    pairs = iter_pairs(src_path, tgt_path)
    while chunk := list(itertools.islice(pairs, CHUNK)):
        report.read += len(chunk)
        nonempty = [(s, t) for s, t in chunk if s.strip() and t.strip()]
        report.empty += len(chunk) - len(nonempty)
        chunk = nonempty
        src_ids = src_tok.encode_batch([s for s, _ in chunk])
        tgt_ids = tgt_tok.encode_batch([t for _, t in chunk])
        kept_src, kept_tgt = [], []
        for s, t in zip(src_ids, tgt_ids):
            if len(s) > max_len or len(t) > max_len:
                report.too_long += 1
                if split == "train" and config.data.too_long == "drop":
                    continue
                s, t = s[:max_len], t[:max_len]
            kept_src.append(s)
            kept_tgt.append(t)
        report.kept += len(kept_src)
        src_writer.extend(kept_src)
        tgt_writer.extend(kept_tgt)
    src_writer.close()
    tgt_writer.close()
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
        if (files := config.data.files(split)) is not None:
            check_parallel(*files)
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
            log.info(reports[split].describe(split, config.data.max_len, config.data.too_long))
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
