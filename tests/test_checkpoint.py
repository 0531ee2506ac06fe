"""Checkpoints: safetensors + JSON round trips, damage detection, no pickle, atomic saves."""

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from dragoman import checkpoint
from dragoman.checkpoint import (
    last_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from dragoman.config import parse_config
from dragoman.errors import DragomanError
from dragoman.models.transformer import Transformer
from dragoman.optim import build_optimizer, build_scheduler
from dragoman.train import train

PACKAGE = Path(__file__).resolve().parents[1] / "dragoman"


def tiny(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    args = dict(dim=16, heads=2, ff=32, enc_layers=1, dec_layers=1, dropout=0.0, max_positions=32)
    return Transformer(12, 12, **{**args, **overrides})


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def data_start(path: Path) -> int:
    """Offset of the first tensor byte: 8-byte header length, then the JSON header."""
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_len


# --- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ties",
    [
        {"share_embeddings": True, "tie_output": True},
        {"share_embeddings": False, "tie_output": True},
        {"share_embeddings": False, "tie_output": False},
    ],
)
def test_weights_round_trip(tmp_path, ties):
    saved, loaded = tiny(seed=0, **ties), tiny(seed=1, **ties)
    save_weights(saved, tmp_path / "model.safetensors")
    load_weights(loaded, tmp_path / "model.safetensors")
    assert_same_weights(saved, loaded)
    src = torch.tensor([[4, 5, 6, 0]])
    tgt = torch.tensor([[2, 7, 8]])
    saved.eval(), loaded.eval()
    assert torch.equal(saved(src, tgt), loaded(src, tgt))


def test_tied_embeddings_stay_tied_after_loading(tmp_path):
    saved, loaded = tiny(seed=0, share_embeddings=True), tiny(seed=1, share_embeddings=True)
    save_weights(saved, tmp_path / "model.safetensors")
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as file:
        stored = set(file.keys())
    # one storage, stored once: the source embedding stands for all three names
    assert "src_embed.weight" in stored
    assert not {"tgt_embed.weight", "output.weight"} & stored
    load_weights(loaded, tmp_path / "model.safetensors")
    assert loaded.tgt_embed.weight is loaded.src_embed.weight
    assert loaded.output.weight is loaded.src_embed.weight
    assert torch.equal(loaded.output.weight, saved.src_embed.weight)


def test_truncated_weights_file_names_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(tiny(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(DragomanError) as caught:
        load_weights(tiny(), path)
    assert str(caught.value).startswith(f"{path}: not a readable safetensors file")
    assert "damaged" in str(caught.value)


def test_flipped_byte_in_tensor_data_fails_the_checksum(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(tiny(), path)
    data = bytearray(path.read_bytes())
    position = data_start(path) + (len(data) - data_start(path)) // 2
    data[position] ^= 0x01  # the file still parses: only the checksum can notice
    path.write_bytes(bytes(data))
    with pytest.raises(DragomanError) as caught:
        load_weights(tiny(), path)
    assert str(caught.value).startswith(f"{path}: checksum mismatch")


def test_missing_weights_file(tmp_path):
    with pytest.raises(DragomanError) as caught:
        load_weights(tiny(), tmp_path / "model.safetensors")
    assert str(caught.value) == f"{tmp_path / 'model.safetensors'}: file not found"


def test_weights_of_another_width_are_refused_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(tiny(dim=16), path)
    with pytest.raises(DragomanError) as caught:
        load_weights(tiny(dim=32, ff=32), path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert re.search(r"\w+ has shape \[(\d+, )?16\], the config says \[(\d+, )?32\]", message)


def test_weights_of_another_depth_are_refused_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(tiny(enc_layers=1), path)
    with pytest.raises(DragomanError) as caught:
        load_weights(tiny(enc_layers=2), path)
    message = str(caught.value)
    assert message.startswith(f"{path}: weights do not fit the model of config.yaml")
    assert "encoder.layers.1." in message
    assert "use the config.yaml the model was trained with" in message


def test_weights_with_other_ties_are_refused_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(tiny(share_embeddings=True), path)
    with pytest.raises(DragomanError, match="missing: \\['tgt_embed.weight'\\]"):
        load_weights(tiny(share_embeddings=False), path)


# --- training checkpoints -----------------------------------------------------------------


def trainer_parts(seed: int):
    model = tiny(seed=seed)
    config = parse_config(
        {
            "data": {"src": "s", "tgt": "t", "train": "x"},
            "train": {"model_dir": "unused", "max_steps": 10},
        }
    )
    optimizer = build_optimizer(model.parameters(), config.train.optimizer)
    scheduler = build_scheduler(optimizer, config.train.schedule, 10, "max")
    return model, optimizer, scheduler


def take_a_step(model, optimizer, scheduler) -> None:
    loss = model(torch.tensor([[4, 5, 6]]), torch.tensor([[2, 7, 8]])).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()


def test_checkpoint_round_trip_restores_optimizer_and_progress(tmp_path):
    model, optimizer, scheduler = trainer_parts(seed=0)
    take_a_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 1, "epoch": 0})
    restored, optimizer2, scheduler2 = trainer_parts(seed=1)
    assert load_checkpoint(tmp_path, restored, optimizer2, scheduler2) == {"step": 1, "epoch": 0}
    assert_same_weights(model, restored)
    assert scheduler2.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]
    state, state2 = optimizer.state_dict()["state"], optimizer2.state_dict()["state"]
    assert state.keys() == state2.keys()
    for pid in state:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(state[pid][name]), torch.as_tensor(state2[pid][name]))


def test_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = trainer_parts(seed=0)
    take_a_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 1})
    good_weights = {k: v.clone() for k, v in model.state_dict().items()}
    take_a_step(model, optimizer, scheduler)

    real_save, calls = checkpoint.save_tensors, []

    def crash_on_second_call(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("disk pulled out")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_tensors", crash_on_second_call)
    with pytest.raises(OSError, match="disk pulled out"):
        save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 2})
    assert len(calls) == 2  # the model weights were written, the trainer state was not
    monkeypatch.undo()

    assert json.loads((tmp_path / "last.json").read_text()) == {
        "checkpoint": "step-00000001",
        "step": 1,
    }
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-00000001"
    assert not (tmp_path / "checkpoints" / "step-00000002").exists()
    restored, optimizer2, scheduler2 = trainer_parts(seed=1)
    assert load_checkpoint(tmp_path, restored, optimizer2, scheduler2) == {"step": 1}
    for key, value in restored.state_dict().items():
        assert torch.equal(value, good_weights[key]), key


def test_damaged_checkpoint_pointer(tmp_path):
    (tmp_path / "last.json").write_text("{not json")
    with pytest.raises(DragomanError, match="damaged checkpoint pointer"):
        last_checkpoint(tmp_path)


def test_no_checkpoint_to_resume_from(tmp_path):
    with pytest.raises(DragomanError) as caught:
        last_checkpoint(tmp_path)
    assert "no checkpoint to resume from" in str(caught.value)
    assert "without --resume" in str(caught.value)


# --- no pickle anywhere -------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    words = "a b c d e f g h".split()
    rng = np.random.default_rng(0)
    src = [" ".join(rng.choice(words, size=rng.integers(1, 6))) for _ in range(40)]
    for split, lines in (("train", src), ("dev", src[:6])):
        (root / f"{split}.src").write_text("".join(s + "\n" for s in lines))
        (root / f"{split}.tgt").write_text("".join(s.upper() + "\n" for s in lines))
    config = parse_config(
        {
            "data": {
                "src": "src",
                "tgt": "tgt",
                "train": str(root / "train"),
                "dev": str(root / "dev"),
                "max_len": 16,
                "tokenizer": {"kind": "word", "vocab_size": 40},
            },
            "model": {
                "d_model": 16,
                "heads": 2,
                "ff": 32,
                "enc_layers": 1,
                "dec_layers": 1,
                "max_positions": 32,
            },
            "train": {
                "model_dir": str(root / "model"),
                "max_steps": 6,
                "validate_every": 3,
                "batch_tokens": 64,
                "device": "cpu",
                "keep_last": 2,
            },
        }
    )
    return train(config)


def test_training_writes_the_expected_model_directory(trained_model_dir):
    assert (trained_model_dir / "config.yaml").is_file()
    assert (trained_model_dir / "model.safetensors").is_file()
    assert json.loads((trained_model_dir / "last.json").read_text())["step"] == 6
    steps = sorted(p.name for p in (trained_model_dir / "checkpoints").iterdir())
    assert steps == ["step-00000003", "step-00000006"]  # keep_last: 2


def test_model_directory_holds_no_pickle(trained_model_dir):
    files = [p for p in trained_model_dir.rglob("*") if p.is_file()]
    assert files
    allowed = {".safetensors", ".json", ".jsonl", ".yaml", ".npy", ".ids"}
    for path in files:
        assert path.suffix in allowed, f"unexpected file {path}"
        data = path.read_bytes()
        assert not data.startswith(b"PK\x03\x04"), f"{path} is a zip (torch.save) archive"
        if path.suffix == ".safetensors":  # 8-byte header length, then a JSON header
            json.loads(data[8 : data_start(path)])
            with safe_open(str(path), framework="pt") as file:
                assert list(file.keys())
        elif path.suffix == ".npy":
            assert data.startswith(b"\x93NUMPY")
            np.load(path, allow_pickle=False)
        elif path.suffix == ".ids":  # raw int32 token ids
            assert len(data) % 4 == 0
        else:
            assert not data.startswith(b"\x80"), f"{path} starts with the pickle protocol byte"
            data.decode("utf-8")
    for pattern in ("*.pt", "*.pth", "*.pkl", "*.pickle", "*.bin", "*.ckpt"):
        assert not list(trained_model_dir.rglob(pattern))


def test_trained_checkpoint_loads_back(trained_model_dir):
    from dragoman.translator import Translator

    translator = Translator.load(trained_model_dir, checkpoint="last")
    assert len(translator.translate(["a b c", "d e"])) == 2


FORBIDDEN = re.compile(
    r"torch\.save\(|torch\.load\(|import pickle|from pickle|pickle\.(?:load|dump)"
    r"|cloudpickle|import dill|allow_pickle=True|weights_only=False"
)


def test_library_source_never_pickles():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not FORBIDDEN.search(text), f"{path}: {FORBIDDEN.search(text)[0]}"
        for call in re.findall(r"np\.load\([^)]*\)", text):  # numpy unpickles unless told not to
            assert "allow_pickle=False" in call, f"{path}: {call}"
        for line in text.splitlines():  # "pickle" may appear only to say it is not used
            if "pickle" in line.lower():
                assert re.search(r"allow_pickle=False|without pickle|never pickle|no pickle", line), (
                    f"{path}: {line.strip()}"
                )
