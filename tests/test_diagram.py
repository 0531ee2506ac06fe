"""`dragoman diagram`: Mermaid that a viewer accepts, drawn from the built model, so that it changes
with the config; every example config; the CLI; a trained model directory's real vocabulary sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import write_copy_task
from dragoman.cli import main
from dragoman.config import load_config, parse_config
from dragoman.diagram import diagram
from dragoman.errors import DragomanError
from dragoman.models import build_model
from dragoman.train import train

CONFIGS = sorted(Path(__file__).parent.parent.glob("configs/*.yaml"))
ID = r"[A-Za-z_][A-Za-z0-9_]*"
LABEL = r'"[^"]*"'  # quotes inside a label must be written #quot;
SHAPES = {r"\[": r"\]", r"\(\[": r"\]\)", r"\[\(": r"\)\]", r"\(\(": r"\)\)", r"\{": r"\}", r"\{\{": r"\}\}"}
NODE = re.compile(
    rf"^(?P<id>{ID})(?:"
    + "|".join(rf"{left}(?P<l{i}>{LABEL}){right}" for i, (left, right) in enumerate(SHAPES.items()))
    + rf")(?::::{ID})?$"
)
ARROWS = r"-->|-\.->|---|-\.-|==>"
EDGE = re.compile(
    rf"^(?P<a>{ID}) (?:(?:{ARROWS})(?:\|(?P<l1>{LABEL})\|)?|-- (?P<l2>{LABEL}) -->|-\. (?P<l3>{LABEL}) \.->) (?P<b>{ID})$"
)
SUBGRAPH = re.compile(rf"^subgraph (?P<id>{ID})(?: \[(?P<l1>{LABEL})\])?$")
STYLING = re.compile(rf"^(?:classDef {ID} \S+|class {ID}(?:,{ID})* {ID}|style {ID} \S+)$")
RESERVED = {"end", "subgraph", "graph", "flowchart", "style", "class", "classDef", "click", "default"}


def check_mermaid(text: str) -> dict[str, list[str]]:
    """The essentials of Mermaid's flowchart grammar; returns the node ids and the edges (a, b, label)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    assert re.fullmatch(r"(flowchart|graph) (TD|TB|BT|LR|RL)", lines[0]), lines[0]
    nodes, subgraphs, edges, depth = [], [], [], 0
    for line in lines[1:]:
        if not line or line.startswith("%%") or STYLING.match(line):
            continue
        if line == "end":
            depth -= 1
            assert depth >= 0, "`end` without `subgraph`"
            continue
        match = NODE.match(line) or SUBGRAPH.match(line) or EDGE.match(line)
        assert match, f"not a node, edge, subgraph or style line: {line!r}"
        labels = [v for k, v in match.groupdict().items() if k.startswith("l") and v]
        for label in labels:
            assert "<" not in label.replace("<br/>", "") and ">" not in label.replace("<br/>", ""), label
        if match.re is SUBGRAPH:
            subgraphs.append(match["id"])
            depth += 1
        elif match.re is NODE:
            nodes.append(match["id"])
        else:
            edges.append((match["a"], match["b"], labels[0][1:-1] if labels else ""))
    assert depth == 0, "unbalanced subgraph/end"
    ids = nodes + subgraphs
    assert len(ids) == len(set(ids)), "an id is defined twice"
    assert not RESERVED & set(ids)
    undefined = {x for a, b, _ in edges for x in (a, b)} - set(nodes)
    assert not undefined, f"edges to undefined nodes: {undefined}"
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize(
    "text",
    [
        'graph XY\n  a["x"]',
        'flowchart TD\n  a["say "hi""]',
        'flowchart TD\n  a["1 < 2"]',
        'flowchart TD\n  a["x"]\n  a --> b',
        'flowchart TD\n  subgraph s ["S"]\n  a["x"]',
        'flowchart TD\n  a["x"]\n  a["again"]',
        'flowchart TD\n  a-b["x"]',
        "flowchart TD\n  a[x y]",
    ],
)
def test_the_checker_rejects_broken_mermaid(text):
    with pytest.raises(AssertionError):
        check_mermaid(text)


def write_config(path: Path, data: dict | None = None, name: str = "test", **model) -> Path:
    data = data or {"src": "de", "tgt": "en", "train": "corpus/train", "tokenizer": {"vocab_size": 500}}
    run = {"model_dir": str(path.parent / "model"), "max_steps": 1}
    config = {"name": name, "data": data, "model": model, "train": run}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def chart(tmp_path: Path, **model) -> str:
    """The diagram of a config with `model`, checked."""
    text = diagram(write_config(tmp_path / "config.yaml", **model))
    check_mermaid(text)
    return text


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_example_config_gives_valid_mermaid_with_its_parameter_count(path):
    text = diagram(path)
    check_mermaid(text)
    config = load_config(path)
    vocab = config.data.tokenizer.vocab_size
    model = build_model(config.model, vocab, 2 if config.task == "classify" else vocab, config.task)
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in text


def test_a_classifier_and_a_language_model_are_drawn_from_their_modules(tmp_path):
    data = {"src": "txt", "tgt": "label", "train": "corpus/train", "tokenizer": {"vocab_size": 500}}
    config = write_config(tmp_path / "c.yaml", data, enc_layers=2, pooling="first")
    raw = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**raw, "task": "classify"}))
    graph = check_mermaid(text := diagram(config))
    assert len([n for n in graph["nodes"] if re.fullmatch(r"enc\d+_attn", n)]) == 2
    assert ("memory", "pool", "") in graph["edges"] and "the first position" in text
    assert "Linear 256 → 2" in text and "softmax over 2 classes" in text
    lm = write_config(
        tmp_path / "lm.yaml", {"src": "txt", "train": "t", "tokenizer": {"vocab_size": 300}}, dec_layers=3
    )
    lm.write_text(yaml.safe_dump({**yaml.safe_load(lm.read_text()), "task": "lm"}))
    graph = check_mermaid(text := diagram(lm))
    assert len([n for n in graph["nodes"] if re.fullmatch(r"dec\d+_self", n)]) == 3
    assert "causal self-attention" in text and "memory" not in graph["nodes"]
    assert "softmax over 300 next tokens" in text


def test_transformer_layers_and_sizes_follow_the_config(tmp_path):
    small = chart(tmp_path, enc_layers=2, dec_layers=1)
    big = chart(tmp_path, enc_layers=3, dec_layers=4, d_model=96, heads=6, ff=200, norm="post")
    for text, enc, dec in ((small, 2, 1), (big, 3, 4)):
        graph = check_mermaid(text)
        assert len([n for n in graph["nodes"] if re.fullmatch(r"enc\d+_attn", n)]) == enc
        crosses = [n for n in graph["nodes"] if re.fullmatch(r"dec\d+_cross", n)]
        assert len(crosses) == dec
        assert sorted(b for a, b, _ in graph["edges"] if a == "memory") == sorted(crosses)  # attention links
    assert "6 heads × 16 = 96" in big and "96 → 200 → 96" in big and "post-norm" in big
    assert "4 heads × 64 = 256" in small and "256 → 1024 → 256" in small and "pre-norm" in small
    assert "nn.Embedding 500 × 96" in big and "sinusoidal positions" in big


def test_shared_embeddings_tied_output_and_positions_are_the_models(tmp_path):
    shared = chart(tmp_path)
    assert "target embedding (shared with the source)" in shared
    assert "tied to the target embedding" in shared
    data = {
        "src": "de",
        "tgt": "en",
        "train": "corpus/train",
        "joint_vocab": False,
        "tokenizer": {"vocab_size": 500},
        "tgt_tokenizer": {"vocab_size": 300},
    }
    text = diagram(write_config(tmp_path / "separate.yaml", data, tie_output=False, positions="learned"))
    check_mermaid(text)
    assert "shared with the source" not in text and "own weight" in text
    assert "nn.Embedding 500 × 256" in text and "nn.Embedding 300 × 256" in text
    assert "Linear 256 → 300" in text and "learned positions" in text


@pytest.mark.parametrize("kind, name, other", [("lstm", "nn.LSTM", "nn.GRU"), ("gru", "nn.GRU", "nn.LSTM")])
def test_recurrent_layers_show_torchs_class(tmp_path, kind, name, other):
    text = chart(tmp_path, encoder=kind, decoder=kind, enc_layers=2, dec_layers=3, hidden=64)
    graph = check_mermaid(text)
    assert other not in text
    assert f"encoder: {name}, 2 layers" in text and f"decoder: {name}, 3 layers" in text
    assert f"{name} layer 2" in text and "input 128 → hidden 2 × 64" in text  # bidirectional: 2 × 64
    assert [n for n in graph["nodes"] if re.fullmatch(r"dec\d+", n)] == ["dec1", "dec2", "dec3"]
    assert {b for a, b, _ in graph["edges"] if a == "bridge"} == {"dec1", "dec2", "dec3"}
    assert ("h, c" in text) == (kind == "lstm")


def test_attention_kind_adds_or_removes_the_attention_link(tmp_path):
    rnn = {"encoder": "lstm", "decoder": "lstm", "hidden": 64, "enc_layers": 1, "dec_layers": 1}
    bahdanau = check_mermaid(chart(tmp_path, attention="bahdanau", **rnn))
    assert ("memory", "attn", "keys, values") in bahdanau["edges"]
    assert ("attn", "dec1", "context c(t)") in bahdanau["edges"]  # Bahdanau's context enters the RNN
    none = chart(tmp_path, attention="none", bridge="copy", dec_hidden=128, tie_output=False, **rnn)
    graph = check_mermaid(none)
    assert "attn" not in graph["nodes"] and "attention" not in none
    assert [b for a, b, _ in graph["edges"] if a == "memory"] == ["bridge"]
    assert "bridge: copy" in none
    luong = chart(tmp_path, attention="luong_general", input_feeding=True, **rnn)
    assert "Luong attention, general" in luong and "input feeding" in luong
    assert ("dec1", "attn", "query h(t)") in check_mermaid(luong)["edges"]
    assert "Luong attention, dot" in chart(tmp_path, attention="luong_dot", dec_hidden=128, **rnn)


def test_cnn_encoder_shows_its_convolutions(tmp_path):
    text = chart(tmp_path, encoder="cnn", decoder="gru", enc_layers=4, kernel_size=5, hidden=48)
    assert text.count("nn.Conv1d 48 → 2 × 48, kernel 5") == 4
    assert "memory: states (B, S, 48)" in text and "mean of the states" in text


def test_labels_escape_quotes_and_angle_brackets(tmp_path):
    text = diagram(write_config(tmp_path / "config.yaml", name='a "quoted" <name> & #1 co'))
    check_mermaid(text)
    assert "a #quot;quoted#quot; #lt;name#gt; #amp; #35;1 co" in text


def test_cli_writes_a_fenced_block_and_a_missing_path_exits_with_2(tmp_path, capsys):
    out = tmp_path / "model.md"
    assert main(["diagram", str(CONFIGS[0]), "--format", "markdown", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "```mermaid" and lines[-1] == "```"
    check_mermaid("\n".join(lines[1:-1]))
    missing = tmp_path / "nowhere.yaml"
    assert main(["diagram", str(missing)]) == 2
    assert "no such config file or model directory" in capsys.readouterr().err
    with pytest.raises(DragomanError, match="nowhere.yaml"):
        diagram(missing)


def test_a_model_directory_gives_the_real_vocabulary_sizes(tmp_path):
    data = write_copy_task(tmp_path / "data", n_train=50, n_dev=5)  # 8 letters + 4 specials
    model = {"d_model": 16, "heads": 2, "ff": 32, "enc_layers": 1, "dec_layers": 1}
    train_section = {"model_dir": str(tmp_path / "model"), "max_steps": 1, "batch_tokens": 64, "threads": 1}
    config = parse_config({"data": data, "model": model, "train": train_section})
    model_dir = train(config)
    from_config, from_model = diagram(write_config(tmp_path / "c.yaml", data, **model)), diagram(model_dir)
    check_mermaid(from_model)
    assert "nn.Embedding 32 × 16" in from_config and "nn.Embedding 12 × 16" in from_model
    assert "softmax over 12 target tokens" in from_model and "trained tokenizers" in from_model
