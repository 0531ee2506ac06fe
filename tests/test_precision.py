"""The speed paths give the same results as the plain ones: fast dropout, bf16 attention, beam
search's shared memory, bf16 training, bf16/int8 inference."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import tiny_config, tiny_transformer, write_copy_task
from dragoman.cli import main
from dragoman.config import ModelConfig, parse_config
from dragoman.models import build_model
from dragoman.models.base import repeat_rows
from dragoman.models.layers import Dropout, MultiHeadAttention
from dragoman.models.rnn import RNNState
from dragoman.search import beam_search, greedy
from dragoman.train import train
from dragoman.translator import Translator, lower_precision


def test_dropout_keeps_1_minus_p_of_the_elements_and_the_expected_value():
    torch.manual_seed(0)
    dropout = Dropout(0.1).train()
    x = torch.ones(200, 1000, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003
    assert torch.allclose(y[kept], torch.tensor(1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.005
    y.sum().backward()  # the gradient flows through the kept elements only, scaled alike
    assert torch.equal(x.grad, y.detach())
    assert torch.equal(dropout.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_dropout_masks_differ_between_calls_and_follow_the_seed():
    dropout = Dropout(0.5).train()
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    a, b = dropout(x), dropout(x)
    torch.manual_seed(3)
    assert not torch.equal(a, b) and torch.equal(dropout(x), a)
    assert abs((a == 0).float().mean().item() - 0.5) < 0.03


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_attention_matches_scaled_dot_product_attention(causal):
    torch.manual_seed(0)
    attention = MultiHeadAttention(64, 4, 0.0)
    x = torch.randn(3, 7, 64)
    mask = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False
    key, value = attention.project_kv(x)
    expected = attention(x, key, value, mask, causal)  # float32: SDPA
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the matmul path
        got = attention(x, key, value, mask, causal)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=0.05, rtol=0.05)
    # Causal with fewer queries than keys (a cached step): query i sits at position L - T + i.
    q = attention._split(attention.query(x))[:, :, -2:]
    probs = MultiHeadAttention.weights(q, key, None, causal=True)
    assert (probs[:, :, 0, 6] == 0).all() and (probs[:, :, 1, 6] > 0).all()
    assert torch.allclose(probs.sum(-1), torch.ones(3, 4, 2))


def _old_expand(state, beams: int):
    """Beam expansion as it was: every row, memory included, copied `beams` times."""
    return state.select(repeat_rows(state.mask if isinstance(state, RNNState) else state.memory_mask, beams))


@pytest.mark.parametrize(
    "model",
    [
        {"encoder": "transformer", "decoder": "transformer"},
        {"encoder": "lstm", "decoder": "lstm", "attention": "bahdanau"},
        {"encoder": "gru", "decoder": "gru", "attention": "luong_general", "input_feeding": True},
    ],
)
def test_beam_search_with_the_memory_kept_once_per_sentence_equals_copying_it(monkeypatch, model):
    torch.manual_seed(1)
    sizes = {"d_model": 32, "heads": 4, "ff": 64, "hidden": 16, "enc_layers": 2, "dec_layers": 2}
    model = build_model(ModelConfig(**sizes, **model), 30, 30).eval()
    src = torch.randint(4, 30, (6, 9))
    src[2, 5:] = 0  # padding
    max_len = torch.tensor([3, 12, 7, 12, 1, 9])
    with torch.no_grad():
        shared = beam_search(model, model.init_state(model.encode(src)), max_len, beam=4, n_best=3)
        state_class = type(model.init_state(model.encode(src)))
        monkeypatch.setattr(state_class, "expand", _old_expand)
        copied = beam_search(model, model.init_state(model.encode(src)), max_len, beam=4, n_best=3)
    assert shared.tokens == copied.tokens
    flat = [score for scores in shared.scores for score in scores]
    assert flat == pytest.approx([score for scores in copied.scores for score in scores], abs=1e-5)


def test_dropping_finished_sentences_keeps_the_right_memory_rows():
    model = tiny_transformer(vocab=30, seed=2)
    src = torch.randint(4, 30, (5, 8))
    with torch.no_grad():
        state = model.init_state(model.encode(src)).expand(3)
        keep = torch.tensor([1, 4])
        rows = (keep[:, None] * 3 + torch.tensor([2, 0, 1])).view(-1)
        picked = state.select(rows)
        alone = model.init_state(model.encode(src[keep])).expand(3)
        tokens = torch.full((6,), 1)
        assert torch.allclose(model.step(tokens, picked)[0], model.step(tokens, alone)[0], atol=1e-5)


@pytest.fixture(scope="module")
def copy_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    data = write_copy_task(root / "data", n_train=1000, n_dev=50, reverse=False)
    config = tiny_config(data, root / "model", max_steps=300, validate_every=300)
    return train(parse_config(config)), data


def test_bf16_training_follows_float32_training(tmp_path, copy_model):
    _, data = copy_model
    losses = {}
    for precision in ("fp32", "bf16"):
        config = tiny_config(
            data, tmp_path / precision, {"dropout": 0.1}, max_steps=100, validate_every=100, log_every=20
        )
        config["train"]["precision"] = precision
        model_dir = train(parse_config(config))
        rows = (model_dir / "metrics.jsonl").read_text().splitlines()
        losses[precision] = [row["loss"] for row in map(json.loads, rows) if row["kind"] == "train"]
    assert losses["bf16"][-1] < 0.8 * losses["bf16"][0]  # it learns
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.1)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precision_inference_mostly_agrees_with_float32(copy_model, precision):
    model_dir, data = copy_model
    sources = open(data["dev"] + ".src").read().splitlines()
    fp32 = Translator.load(model_dir)
    lower = Translator.load(model_dir, precision=precision)
    expected = fp32.translate(sources, beam=3)
    assert sum(map(str.__eq__, lower.translate(sources, beam=3), expected)) >= 0.9 * len(sources)


def test_lower_precision_keeps_the_float32_model_untouched(copy_model):
    model_dir, _ = copy_model
    model = Translator.load(model_dir).model
    before = copy.deepcopy(model.state_dict())
    assert next(lower_precision(copy.deepcopy(model), "bf16").parameters()).dtype == torch.bfloat16
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_translate_cli_takes_a_precision(copy_model, tmp_path, capsys):
    model_dir, _ = copy_model
    source = tmp_path / "in.txt"
    source.write_text("a b c\nd e\n")
    outputs = {}
    for precision in ("fp32", "int8"):
        assert main(["translate", str(model_dir), "-i", str(source), "--precision", precision]) == 0
        outputs[precision] = capsys.readouterr().out.splitlines()
        assert outputs[precision] == Translator.load(model_dir, precision=precision).translate(
            ["a b c", "d e"]
        )
    with pytest.raises(SystemExit):
        main(["translate", str(model_dir), "--precision", "fp8"])


def test_greedy_equals_beam_1_with_lower_precision(copy_model):
    model_dir, _ = copy_model
    model = Translator.load(model_dir, precision="int8").model
    src = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        state = model.init_state(model.encode(src))
        g = greedy(model, state, torch.tensor([6]))
        b = beam_search(model, model.init_state(model.encode(src)), torch.tensor([6]), beam=1, alpha=0.0)
    assert g.tokens == b.tokens
