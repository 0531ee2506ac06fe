"""Dialogue: turns, contexts and pairs on hand-made conversations; the chat session against a fake
translator that records what it is asked; then `dragoman chat` on a tiny trained model."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import tiny_config, write_copy_task
from dragoman.chat import ChatSession, context, dialogue_pairs, merge_turns
from dragoman.cli import main
from dragoman.config import DecodeConfig, DialogueConfig
from dragoman.translator import Translator

MESSAGES = [  # two people; A sends three messages in a row (one empty), B two, with a newline and tab
    ("A", "hi"),
    ("A", ""),
    ("A", "how are you?"),
    ("B", "fine,\n  thanks"),
    ("B", "and\tyou?"),
    ("A", "good"),
    ("B", "what are you doing today?"),
    ("A", "reading"),
]
TURNS = ["hi how are you?", "fine, thanks and you?", "good", "what are you doing today?", "reading"]


def test_consecutive_messages_of_one_speaker_are_one_turn_on_one_line():
    assert merge_turns(MESSAGES) == TURNS


def test_an_empty_message_between_two_of_one_speaker_does_not_split_them():
    assert merge_turns([("A", "x"), ("B", " \n"), ("A", "y"), ("B", "z")]) == ["x y", "z"]
    assert merge_turns([]) == []


def test_context_is_the_last_turns_oldest_first_joined_by_the_separator():
    assert context(TURNS, 3, " | ") == "good | what are you doing today? | reading"
    assert context(TURNS[:2], 3, " | ") == "hi how are you? | fine, thanks and you?"  # fewer than 3
    assert context(TURNS[:1], 3, " | ") == "hi how are you?"
    assert context(TURNS, 2, " <s> ") == "what are you doing today? <s> reading"
    with pytest.raises(ValueError, match="at least 1"):
        context(TURNS, 0, " | ")


def test_every_turn_after_the_first_is_a_reply_to_the_turns_before_it():
    assert dialogue_pairs(["a", "b", "c", "d"], 2, " | ") == [("a", "b"), ("a | b", "c"), ("b | c", "d")]
    assert dialogue_pairs(["a"], 3, " | ") == []
    pairs = dialogue_pairs(TURNS, 3, " / ")
    assert pairs[-1] == ("fine, thanks and you? / good / what are you doing today?", "reading")


# The session against a fake translator.


class FakeTranslator:
    """Replies from a script (or "ok"); records each input text and the options it came with.
    Tokens are words, and inputs may have at most `max_len` of them (like data.max_len)."""

    def __init__(self, replies: list[str] | None = None, max_len: int = 100) -> None:
        self.replies = list(replies or [])
        self.inputs: list[str] = []
        self.options: list[dict] = []
        self.config = SimpleNamespace(data=SimpleNamespace(max_len=max_len))
        self.src_tok = SimpleNamespace(encode=str.split)

    def decode_config(self, **options) -> DecodeConfig:
        return DecodeConfig.model_validate(options)

    def translate(self, texts: list[str], **options) -> list[str]:
        self.decode_config(**options)
        self.inputs += texts
        self.options.append(options)
        return [self.replies.pop(0) if self.replies else "ok" for _ in texts]


def chat(text: str, translator: FakeTranslator, turns: int = 3, options: dict | None = None) -> list[str]:
    out = io.StringIO()
    dialogue = DialogueConfig(turns=turns, separator=" | ")
    ChatSession(translator, options or {}, dialogue).run(io.StringIO(text), out)
    return out.getvalue().splitlines()


def test_the_session_asks_with_the_contexts_the_pair_builder_trains_on():
    """Play the conversation TURNS with the fake as B: the contexts match dialogue_pairs' for B's turns."""
    translator = FakeTranslator(replies=[TURNS[1], TURNS[3]])
    out = chat(f"{TURNS[0]}\n{TURNS[2]}\n{TURNS[4]}\n", translator)
    assert out == [TURNS[1], TURNS[3], "ok"]
    contexts = [c for c, _ in dialogue_pairs([*TURNS, "ok"], 3, " | ")]
    assert translator.inputs == contexts[0::2]  # after each of A's turns
    assert translator.inputs[-1] == "good | what are you doing today? | reading"


def test_reset_forgets_the_conversation_and_history_shows_it():
    translator = FakeTranslator(replies=["hello", "yes"])
    out = chat("hi\n:history\n:reset\nare you there\n:history\n:context\n", translator)
    assert translator.inputs == ["hi", "are you there"]  # nothing of the first conversation
    assert out == ["hello", "you: hi", "model: hello", "(a new conversation)", "yes"] + [
        "you: are you there",
        "model: yes",
        "are you there",
    ]


def test_an_empty_reply_is_no_turn_so_the_users_next_line_continues_theirs():
    translator = FakeTranslator(replies=["", "fine"])
    chat("hi\nhow are you\n", translator)
    assert translator.inputs == ["hi", "hi how are you"]


def test_turns_can_be_changed_in_the_session():
    translator = FakeTranslator(replies=["b", "d", "f"])
    out = chat("a\nc\n:turns 2\ne\n:turns 0\n", translator, turns=5)
    assert translator.inputs == ["a", "a | b | c", "d | e"]
    assert "turns = 2" in out and out[-1] == "error: usage: :turns N, with N ≥ 1"


def test_a_context_longer_than_max_len_drops_its_oldest_turns():
    translator = FakeTranslator(replies=["b", "d"], max_len=3)  # tokens: words, "|" included
    chat("a\nc\nx y z w\n", translator, turns=5)
    # "a | b | c" is 5 tokens: "b | c" (3) fits; "x y z w" alone is too long but the newest turn stays
    assert translator.inputs == ["a", "b | c", "x y z w"]


def test_decoding_options_reach_the_translator_and_defaults_restores_them():
    translator = FakeTranslator()
    chat(
        "a\n:sampling true\n:temperature 0.7\n:top_p 0.9\nb\n:defaults\nc\n", translator, options={"seed": 3}
    )
    assert translator.options == [  # reply n of the session samples with seed + n
        {"seed": 3},
        {"seed": 4, "sampling": True, "temperature": 0.7, "top_p": 0.9},
        {"seed": 5},
    ]
    translator = FakeTranslator()
    chat("a\n:reset\nb\n:seed none\nc\n", translator, options={"sampling": True, "seed": 3})
    assert [o["seed"] for o in translator.options] == [3, 4, None]


def test_help_names_the_chat_commands_and_quit_stops():
    translator = FakeTranslator()
    out = chat(":help\na\n:q\nb\n", translator)
    assert any(line.startswith(":reset") and "conversation" in line for line in out)
    assert translator.inputs == ["a"]


# End to end: a tiny Transformer trained on the reversal task, as if the reversal were a reply.


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chat")
    data = write_copy_task(root / "data", n_train=600, n_dev=20)
    config = tiny_config(data, root / "model", max_steps=120, validate_every=120, dev_sentences=10)
    config["dialogue"] = {"turns": 1, "separator": " | "}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(root / "config.yaml")]) == 0
    return root / "model"


@pytest.fixture
def calls(monkeypatch) -> list[tuple[list[str], dict]]:
    """(texts, options) of every Translator.translate_nbest call."""
    recorded = []
    original = Translator.translate_nbest

    def spy(self, texts, **options):
        recorded.append((list(texts), options))
        return original(self, texts, **options)

    monkeypatch.setattr(Translator, "translate_nbest", spy)
    return recorded


def run_chat(monkeypatch, capsys, text: str, *args: str) -> tuple[int, list[str], str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    capsys.readouterr()
    code = main(["chat", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_cli_chat_keeps_the_history_and_reset_clears_it(model_dir, monkeypatch, capsys, calls):
    text = "a b c\nd e\n:reset\nd e\n"
    code, out, err = run_chat(monkeypatch, capsys, text, str(model_dir), "--turns", "3")
    assert code == 0, err
    first = out[0]
    assert [texts for texts, _ in calls] == [["a b c"], [f"a b c | {first} | d e"], ["d e"]]
    api = Translator.load(model_dir)
    assert out == [
        api.translate(["a b c"])[0],
        api.translate([f"a b c | {first} | d e"])[0],
        "(a new conversation)",
        api.translate(["d e"])[0],
    ]


def test_cli_chat_uses_the_models_dialogue_section(model_dir, monkeypatch, capsys, calls):
    code, out, _ = run_chat(monkeypatch, capsys, "a b c\nd e\n", str(model_dir))  # turns: 1
    assert code == 0
    assert [texts for texts, _ in calls] == [["a b c"], ["d e"]]
    assert out == Translator.load(model_dir).translate(["a b c", "d e"])
    assert len(set(out)) == 2  # the model does not say one thing to everything


def test_cli_chat_sampling_options_reach_the_translator(model_dir, monkeypatch, capsys, calls):
    args = ["--sample", "--temperature", "0.5", "--top-k", "3", "--top-p", "0.9", "--seed", "7"]
    code, out, err = run_chat(monkeypatch, capsys, "a b c\n:temperature 2\nd e\n", str(model_dir), *args)
    assert code == 0, err
    options = {"sampling": True, "temperature": 0.5, "top_k": 3, "top_p": 0.9, "seed": 7}
    assert [o for _, o in calls] == [options, {**options, "temperature": 2.0, "seed": 8}]  # seed + reply
    assert out[0] == Translator.load(model_dir).translate(["a b c"], **options)[0]  # seeded: the same


def test_cli_chat_refuses_bad_turns_and_warns_without_a_dialogue_section(
    model_dir, monkeypatch, capsys, tmp_path, caplog
):
    code, _, err = run_chat(monkeypatch, capsys, "a\n", str(model_dir), "--turns", "0")
    assert code == 2 and "--turns must be at least 1" in err
    plain = Path(shutil.copytree(model_dir, tmp_path / "plain"))
    config = yaml.safe_load((plain / "config.yaml").read_text())
    del config["dialogue"]
    (plain / "config.yaml").write_text(yaml.safe_dump(config))
    code, out, _ = run_chat(monkeypatch, capsys, "a b\n", str(plain))
    assert code == 0 and len(out) == 1
    assert "no dialogue section: contexts use the defaults (3 turns" in caplog.text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_chat_banner_and_a_prompt(monkeypatch, tmp_path):
    monkeypatch.setattr(ChatSession, "history_file", tmp_path / "history")  # not the user's
    out = io.StringIO()
    ChatSession(FakeTranslator(["hello"]), {}, DialogueConfig()).run(Terminal("hi\n"), out)
    lines = out.getvalue().split("\n")
    assert lines[0].startswith("dragoman chat: say something")
    assert lines[1:] == ["> hello", "> ", ""]


def test_make_pairs_splits_by_conversation_and_merges_messages(tmp_path):
    """examples/chitchat/make_pairs.py on a hand-made dataset.json in chitchat's format."""
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[1] / "examples" / "chitchat" / "make_pairs.py"
    spec = importlib.util.spec_from_file_location("make_pairs", path)
    make_pairs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pairs)

    def conversation(i: int, turns: int) -> dict:  # turn t is sent as two messages, "c{i}t{t}" and "!"
        groups = [[{"sender": f"s{t % 2}", "text": f"c{i}t{t}"}, {"sender": f"s{t % 2}", "text": "!"}] for t in range(turns)]  # fmt: skip
        return {"prompt": "?", "ratings": {}, "start": "", "messages": groups}

    data = {f"id{i}": conversation(i, 2 + i % 3) for i in range(10)} | {"alone": conversation(99, 1)}
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    out = tmp_path / "pairs"
    args = [
        str(out),
        "--dataset",
        str(tmp_path / "dataset.json"),
        "--dev",
        "2",
        "--test",
        "3",
        "--turns",
        "2",
    ]
    assert make_pairs.main(args) == 0
    seen = {}
    for split, n in (("train", 5), ("dev", 2), ("test", 3)):
        contexts = (out / f"{split}.context").read_text().splitlines()
        replies = (out / f"{split}.reply").read_text().splitlines()
        ids = {reply.split("t")[0] for reply in replies}  # "c3t1 !" → "c3"
        assert len(ids) == n and not ids & set(seen), split  # whole conversations, in one split only
        seen |= dict.fromkeys(ids, split)
        assert len(contexts) == len(replies) == sum(1 + int(i[1:]) % 3 for i in ids)  # turns - 1 each
        assert all(r.endswith(" !") for r in replies)  # a speaker's two messages are one turn
    assert "c99" not in seen  # one turn: no pair
    c5 = (out / f"{seen['c5']}.context").read_text().splitlines()  # 4 turns: 3 pairs, contexts of ≤ 2 turns
    assert [c for c in c5 if c.startswith("c5")] == ["c5t0 !", "c5t0 ! | c5t1 !", "c5t1 ! | c5t2 !"]
