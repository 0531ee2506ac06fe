"""`dragoman prepare`: file checks, cleaning counts, stored ids, reuse, and length bucketing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dragoman.cli import main
from dragoman.config import load_config
from dragoman.data import prepare as prepare_module
from dragoman.data.batches import PairBatches
from dragoman.data.prepare import load_shards, prepare
from dragoman.data.shards import Shard, ShardWriter

TRAIN_SRC = ["a b c", "b c d", "c d e", "d e f", "e f a", "f a b"]
TRAIN_TGT = ["A B C", "B C D", "C D E", "D E F", "E F A", "F A B"]
DEV_SRC = ["a b", "c d"]
DEV_TGT = ["A B", "C D"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_config(tmp_path: Path, max_len: int = 8, kind: str = "word", dev: bool = True) -> Path:
    data = {
        "src": "src",
        "tgt": "tgt",
        "train": str(tmp_path / "train"),
        "max_len": max_len,
        "tokenizer": {"kind": kind, "vocab_size": 40},
    }
    if dev:
        data["dev"] = str(tmp_path / "dev")
    config = {
        "data": data,
        "model": {"d_model": 16, "heads": 2, "ff": 32, "enc_layers": 1, "dec_layers": 1},
        "train": {"model_dir": str(tmp_path / "model"), "max_steps": 1},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def write_corpus(tmp_path: Path, src=TRAIN_SRC, tgt=TRAIN_TGT, dev_src=DEV_SRC, dev_tgt=DEV_TGT):
    write_lines(tmp_path / "train.src", src)
    write_lines(tmp_path / "train.tgt", tgt)
    write_lines(tmp_path / "dev.src", dev_src)
    write_lines(tmp_path / "dev.tgt", dev_tgt)


def run_prepare(tmp_path: Path, capsys, **config_options) -> tuple[int, str, str]:
    code = main(["prepare", str(write_config(tmp_path, **config_options))])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("dragoman: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- files the user got wrong -------------------------------------------------------------


def test_line_counts_differ_names_both_files_and_counts(tmp_path, capsys):
    write_corpus(tmp_path, tgt=TRAIN_TGT[:4])
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.src'} has 6 lines" in line
    assert f"{tmp_path / 'train.tgt'} has 4" in line


def test_invalid_utf8_in_training_source_names_file_line_and_byte_offset(tmp_path, capsys):
    write_corpus(tmp_path)
    # line 3 starts at byte 12 ("a b c\n" + "b c d\n"); the bad byte is its 3rd byte
    (tmp_path / "train.src").write_bytes(b"a b c\nb c d\nc \xff e\nd e f\ne f a\nf a b\n")
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.src'}:3:" in line
    assert "invalid UTF-8 byte 0xff at byte offset 14" in line


def test_missing_training_file(tmp_path, capsys):
    write_corpus(tmp_path)
    (tmp_path / "train.tgt").unlink()
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.tgt'}: file not found" in line


def test_missing_dev_file_is_found_before_any_work(tmp_path, capsys):
    write_corpus(tmp_path)
    (tmp_path / "dev.src").unlink()
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'dev.src'}: file not found" in line
    assert not (tmp_path / "model" / "tokenizer.json").exists()


@pytest.mark.parametrize("content", [b"", b"\n  \n\t\n\n  \n\n"])
def test_empty_training_file(tmp_path, capsys, content):
    write_corpus(tmp_path)
    (tmp_path / "train.src").write_bytes(content)
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.src'}: file is empty" in line


def test_directory_in_place_of_a_file(tmp_path, capsys):
    write_corpus(tmp_path)
    (tmp_path / "train.tgt").unlink()
    (tmp_path / "train.tgt").mkdir()
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.tgt'}: is a directory, not a file" in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file(tmp_path, capsys):
    write_corpus(tmp_path)
    (tmp_path / "train.src").chmod(0)
    try:
        code, _, err = run_prepare(tmp_path, capsys)
    finally:
        (tmp_path / "train.src").chmod(0o644)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.src'}: permission denied" in line


def test_permission_denied_is_one_line(tmp_path, capsys, monkeypatch):
    """The same as chmod 000, but also when the tests run as root."""
    from dragoman.data import text

    write_corpus(tmp_path)
    real_open = open

    def refuse_train_src(path, *args, **kwargs):
        if Path(path) == tmp_path / "train.src":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(text, "open", refuse_train_src, raising=False)
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'train.src'}: permission denied" in line


def test_model_dir_that_cannot_be_created(tmp_path, capsys):
    write_corpus(tmp_path)
    (tmp_path / "model").write_text("a file, not a directory")
    code, _, err = run_prepare(tmp_path, capsys)
    line = assert_one_line_error(code, err)
    assert f"{tmp_path / 'model' / 'data'}: cannot create" in line
    assert "train.model_dir" in line


def test_missing_file_in_a_real_process_has_no_traceback(tmp_path):
    write_corpus(tmp_path)
    (tmp_path / "train.src").unlink()
    config = write_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "prepare", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("dragoman: error:")
    ]
    assert f"{tmp_path / 'train.src'}: file not found" in result.stderr


# --- cleaning, counted ----------------------------------------------------------------------


def test_empty_and_too_long_pairs_are_skipped_and_counted(tmp_path):
    long = "a b c d e f a b"  # 8 words > max_len 5
    src = ["a b c", "", "b c d", "   ", "c d", long, "d e f", "e f a"]
    tgt = ["A B C", "B", "B C D", "C", "\t", "A B", "D E F " * 2, "E F A"]
    dev_src = ["a b", long, "  ", "c d"]
    dev_tgt = ["A B", "A", "B", "C D E F A B C"]  # 7 words: truncated too
    write_corpus(tmp_path, src, tgt, dev_src, dev_tgt)
    config_path = write_config(tmp_path, max_len=5)
    # a real process: the report is what the user sees, printed or logged
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "prepare", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = result.stdout + result.stderr
    assert (
        "train: 8 pairs read, 3 empty or whitespace-only skipped, "
        "2 longer than 5 tokens dropped, 3 kept" in report
    )
    assert (
        "dev: 4 pairs read, 1 empty or whitespace-only skipped, "
        "2 longer than 5 tokens truncated, 3 kept" in report
    )

    config = load_config(config_path)
    train_src, train_tgt = load_shards(config, "train")
    assert len(train_src) == len(train_tgt) == 3
    assert max(train_src.lengths) <= 5 and max(train_tgt.lengths) <= 5
    assert list(train_src.lengths) == [3, 3, 3]  # "a b c", "b c d", "e f a"
    dev_src_ids, dev_tgt_ids = load_shards(config, "dev")
    assert len(dev_src_ids) == len(dev_tgt_ids) == 3
    assert list(dev_src_ids.lengths) == [2, 5, 2]
    assert list(dev_tgt_ids.lengths) == [2, 1, 5]
    saved = json.loads((tmp_path / "model" / "data" / "prepared.json").read_text())
    assert saved["splits"]["train"] == {"read": 8, "empty": 3, "too_long": 2, "kept": 3, "blocks": 0}
    assert saved["splits"]["dev"] == {"read": 4, "empty": 1, "too_long": 2, "kept": 3, "blocks": 0}


def test_nothing_left_after_cleaning(tmp_path, capsys):
    write_corpus(tmp_path, ["a b c d e f"] * 3, ["A B C D E F"] * 3)
    code, _, err = run_prepare(tmp_path, capsys, max_len=2)
    line = assert_one_line_error(code, err)
    assert "no training pairs left after cleaning" in line
    assert "data.max_len" in line


def test_char_tokenizer_counts_characters(tmp_path):
    write_corpus(tmp_path, ["ab", "abcdef", "ba"], ["AB", "AB", "BA"], ["ab"], ["AB"])
    config = load_config(write_config(tmp_path, max_len=4, kind="char"))
    reports = prepare(config, force=True)
    assert reports["train"].describe("train", config) == (
        "train: 3 pairs read, 0 empty or whitespace-only skipped, 1 longer than 4 tokens dropped, 2 kept"
    )
    assert list(load_shards(config, "train")[0].lengths) == [2, 2]


# --- ids stored once -----------------------------------------------------------------------


def shard_files(model_dir: Path) -> dict[str, tuple[int, int]]:
    files = sorted((model_dir / "data").glob("*.ids")) + sorted((model_dir / "data").glob("*.npy"))
    assert len(files) == 8  # train and dev, src and tgt, ids and offsets
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


def test_unchanged_data_section_reuses_the_stored_ids(tmp_path, monkeypatch):
    write_corpus(tmp_path)
    config = load_config(write_config(tmp_path))
    first = prepare(config)
    model_dir = Path(config.train.model_dir)
    before = shard_files(model_dir)
    marker = (model_dir / "data" / "prepared.json").read_text()

    def no_retraining(*args, **kwargs):
        raise AssertionError("prepare ran again although the data section did not change")

    monkeypatch.setattr(prepare_module, "train_tokenizers", no_retraining)
    config.train.max_steps = 5  # not part of the data section
    again = prepare(config)
    assert again == first
    assert shard_files(model_dir) == before
    assert (model_dir / "data" / "prepared.json").read_text() == marker


def test_changed_data_section_prepares_again(tmp_path):
    write_corpus(tmp_path)
    config = load_config(write_config(tmp_path))
    prepare(config)
    before = shard_files(Path(config.train.model_dir))
    config.data.max_len = 4  # no pair is longer, but the ids could have changed
    reports = prepare(config)
    after = shard_files(Path(config.train.model_dir))
    assert all(after[name] != before[name] for name in before)
    assert reports["train"].kept == 6


# --- length bucketing ----------------------------------------------------------------------


def random_pair_batches(tmp_path: Path, batch_tokens: int, n: int = 600, seed: int = 3):
    """Random source lengths 1-40, target lengths near them (as for real translations)."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(1, 41, size=n)
    tgt_len = np.clip(src_len + rng.integers(-3, 4, size=n), 1, None)
    for side, lengths in (("src", src_len), ("tgt", tgt_len)):
        writer = ShardWriter(tmp_path / f"train.{side}")
        writer.extend([list(range(4, 4 + k)) for k in lengths.tolist()])
        writer.close()
    src, tgt = Shard(tmp_path / "train.src"), Shard(tmp_path / "train.tgt")
    return PairBatches(src, tgt, batch_tokens, seed=7), src_len, tgt_len


def as_tuples(batches: list[np.ndarray]) -> list[tuple[int, ...]]:
    return [tuple(b.tolist()) for b in batches]


def test_batches_respect_batch_tokens(tmp_path):
    batches, src_len, tgt_len = random_pair_batches(tmp_path, batch_tokens=120)
    for epoch in range(3):
        for indices in batches.epoch(epoch):
            size = len(indices) * max(max(src_len[indices]), max(tgt_len[indices] + 1))
            assert size <= 120


def test_every_pair_once_per_epoch(tmp_path):
    batches, _, _ = random_pair_batches(tmp_path, batch_tokens=120)
    for epoch in range(3):
        seen = np.concatenate(batches.epoch(epoch))
        assert sorted(seen.tolist()) == list(range(len(batches)))


def test_order_is_a_function_of_seed_and_epoch(tmp_path):
    batches, _, _ = random_pair_batches(tmp_path, batch_tokens=120)
    replay = PairBatches(batches.src, batches.tgt, 120, seed=7)
    other_seed = PairBatches(batches.src, batches.tgt, 120, seed=8)
    assert as_tuples(batches.epoch(2)) == as_tuples(replay.epoch(2))
    assert as_tuples(batches.epoch(2)) != as_tuples(batches.epoch(3))
    assert as_tuples(batches.epoch(2)) != as_tuples(other_seed.epoch(2))


def test_padding_is_small(tmp_path):
    batches, _, _ = random_pair_batches(tmp_path, batch_tokens=400)
    padded = real = 0
    for indices in batches.epoch(0):
        batch = batches.collate(indices)
        padded += batch.src.numel() + batch.tgt_out.numel()
        real += batch.src_tokens + batch.tgt_tokens
    assert padded / real < 1.3


def test_collate_shifts_the_target(tmp_path):
    from dragoman.data.tokenizers import BOS, EOS, PAD

    batches, src_len, tgt_len = random_pair_batches(tmp_path, batch_tokens=400, n=20)
    indices = np.array([0, 1])
    batch = batches.collate(indices)
    for row, i in enumerate(indices.tolist()):
        n = int(tgt_len[i])
        assert batch.tgt_in[row, 0] == BOS
        assert batch.tgt_in[row, 1 : n + 1].tolist() == list(range(4, 4 + n))
        assert batch.tgt_out[row, :n].tolist() == list(range(4, 4 + n))
        assert batch.tgt_out[row, n] == EOS
        assert (batch.src[row, int(src_len[i]) :] == PAD).all()


def test_editing_a_corpus_without_touching_the_config_prepares_again(tmp_path):
    import os

    from dragoman.config import parse_config
    from dragoman.data.prepare import load_shards, prepare

    data = tmp_path / "d"
    data.mkdir()
    (data / "train.src").write_text("a b\nc d\n")
    (data / "train.tgt").write_text("b a\nd c\n")
    raw = {
        "data": {
            "src": "src",
            "tgt": "tgt",
            "train": str(data / "train"),
            "tokenizer": {"kind": "word", "vocab_size": 20},
        },
        "train": {"model_dir": str(tmp_path / "m"), "max_steps": 1},
    }
    prepare(parse_config(raw))
    (data / "train.src").write_text("a b\nc d\ne f\n")
    (data / "train.tgt").write_text("b a\nd c\nf e\n")
    os.utime(data / "train.src", ns=(1, 10**18))  # a different stamp even within one clock tick
    prepare(parse_config(raw))
    assert len(load_shards(parse_config(raw), "train")[0]) == 3
