"""The interactive session: its commands against a fake translator that records the options of each
call, then `dragoman translate MODEL_DIR --interactive` on a tiny trained model against the Python API."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from conftest import tiny_config, write_copy_task
from dragoman.cli import main
from dragoman.config import DecodeConfig
from dragoman.errors import DragomanError
from dragoman.interactive import Session
from dragoman.translator import Translation, Translator


class FakeTranslator:
    """Reverses the words; hypothesis k of the n-best list ends in "#k" and scores -k."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def decode_config(self, **options) -> DecodeConfig:
        try:
            return DecodeConfig.model_validate(options)
        except ValidationError as exc:
            raise DragomanError(f"invalid decoding options: {exc.errors()[0]['msg']}") from None

    def translate_nbest(self, texts: list[str], **options) -> list[list[Translation]]:
        n_best = self.decode_config(**options).n_best
        self.calls.append(options)
        words = [" ".join(text.split()[::-1]) for text in texts]
        return [[Translation(w + (f"#{k}" if k else ""), float(-k)) for k in range(n_best)] for w in words]


class Keys(io.StringIO):
    """Input where a line "^C" is Ctrl-C: reading it raises KeyboardInterrupt."""

    def readline(self, *args) -> str:
        line = super().readline(*args)
        if line == "^C\n":
            raise KeyboardInterrupt
        return line


class Terminal(Keys):
    def isatty(self) -> bool:
        return True


def session(text: str, options: dict | None = None) -> tuple[FakeTranslator, list[str]]:
    """Run a session over piped `text`; the fake translator and the output lines."""
    translator, out = FakeTranslator(), io.StringIO()
    Session(translator, options or {}).run(io.StringIO(text), out)
    return translator, out.getvalue().splitlines()


def test_each_line_is_translated_and_empty_lines_are_ignored():
    translator, out = session("a b c\n\n   \nd e\n")
    assert out == ["c b a", "e d"]
    assert translator.calls == [{}, {}]


def test_set_changes_the_options_of_the_next_translation_with_parsed_values():
    text = (
        "x\n:set beam 5\ny\n:beam 2\n:set sampling true\n:temperature 0.7\n:set seed 3\n:set seed none\nz\n"
    )
    translator, out = session(text)
    assert translator.calls == [
        {},
        {"beam": 5},
        {"beam": 2, "sampling": True, "temperature": 0.7, "seed": None},
    ]
    assert out[0] == "x" and "beam = 5" in out and "seed = None" in out


@pytest.mark.parametrize(
    "command, expected",
    [
        (":set beam 0", ["beam 0", "an integer ≥ 1"]),
        (":set n_best 9", ["n_best 9", "cannot exceed decode.beam (5)"]),
        (":set beam x", ["beam x", "valid integer"]),
        (":top_p 1.5", ["top_p 1.5", "a number > 0.0 and ≤ 1.0"]),
        (":set sampling maybe", ["sampling maybe", "true or false"]),
        (":set foo 3", ["unknown option foo", "beam, n_best"]),
        (":set beam", ["usage: :set KEY VALUE"]),
    ],
)
def test_an_invalid_value_prints_one_error_and_keeps_the_options(command, expected):
    translator, out = session(f"{command}\nx y\n", {"beam": 5})
    assert len(out) == 2 and out[1] == "y x"
    assert out[0].startswith("error: ") and all(part in out[0] for part in expected), out[0]
    assert translator.calls == [{"beam": 5}]


def test_invalid_startup_options_fail_before_reading():
    with pytest.raises(DragomanError, match="n_best"):
        Session(FakeTranslator(), {"n_best": 2})


def test_reset_goes_back_to_the_startup_options():
    translator, _ = session(":set beam 2\n:set n_best 2\n:reset\nx\n", {"beam": 4})
    assert translator.calls == [{"beam": 4}]


def test_show_lists_every_option_in_effect_and_marks_the_set_ones():
    _, out = session(":set beam 3\n:show\n")
    assert out[1:] == [f"{key:<15}{value}{' *' if key == 'beam' else ''}"
                       for key, value in DecodeConfig(beam=3).model_dump().items()]  # fmt: skip


def test_history_lists_inputs_and_outputs():
    _, out = session("a b\n:beam 2\n:n_best 2\nc d\n:history\n")
    assert out[-5:] == ["[0] a b", "    b a", "[1] c d", "    1\t0.0000\td c", "    1\t-1.0000\td c#1"]


def test_n_best_prints_the_input_number_and_score_of_each_hypothesis():
    _, out = session("a b\nc d\n", {"beam": 3, "n_best": 2})
    assert out == ["0\t0.0000\tb a", "0\t-1.0000\tb a#1", "1\t0.0000\td c", "1\t-1.0000\td c#1"]


@pytest.mark.parametrize("quit", [":quit", ":q", ":exit"])
def test_quit_stops_reading(quit):
    translator, infile = FakeTranslator(), io.StringIO(f"a\n{quit}\nb\n")
    Session(translator, {}).run(infile, io.StringIO())
    assert len(translator.calls) == 1 and infile.read() == "b\n"


def test_the_end_of_the_input_ends_the_session_even_without_a_newline():
    assert session("a b\nc d")[1] == ["b a", "d c"]


def test_unknown_commands_help_and_timing():
    _, out = session(":frobnicate\n:\n:help\n:time on\nx\n:time off\ny\n:time maybe\n")
    assert out[0] == "error: unknown command :frobnicate; :help lists the commands"
    assert out[1] == "error: unknown command :; :help lists the commands"
    assert any(line.startswith(":set KEY VALUE") for line in out)
    x = out.index("x")
    assert out[x - 1] == "time on" and out[x + 2] == "time off" and out[x + 3] == "y"
    assert out[x + 1].startswith("(") and out[x + 1].endswith(" s)")
    assert out[-1] == "error: usage: :time on, or :time off"


def test_a_terminal_gets_a_prompt_and_ctrl_c_cancels_only_the_line(monkeypatch, tmp_path):
    monkeypatch.setattr(Session, "history_file", tmp_path / "history")  # not the user's
    translator, out = FakeTranslator(), io.StringIO()
    Session(translator, {}).run(Terminal("a b\n^C\nc d\n"), out)
    lines = out.getvalue().split("\n")
    assert lines[0].startswith("dragoman interactive:")
    assert lines[1:] == ["> b a", "> ", "> d c", "> ", ""]  # the last prompt met the end: a newline
    assert len(translator.calls) == 2


def test_ctrl_c_stops_a_piped_session():  # the CLI then says "interrupted" and exits with 130
    with pytest.raises(KeyboardInterrupt):
        Session(FakeTranslator(), {}).run(Keys("a\n^C\nb\n"), io.StringIO())


# End to end: a tiny LSTM trained on the reversal task, driven through `dragoman translate --interactive`.


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interactive")
    data = write_copy_task(root / "data", n_train=400, n_dev=30)
    model = {"encoder": "lstm", "decoder": "lstm", "attention": "bahdanau", "hidden": 32}
    model |= {"enc_layers": 1, "dec_layers": 1}
    config = tiny_config(data, root / "model", model, max_steps=30, validate_every=30, dev_sentences=10)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(root / "config.yaml")]) == 0
    return root / "model"


def test_the_cli_session_translates_like_the_api(model_dir, monkeypatch, capsys):
    sources = ["a b c", "d e f g", "h a", "b b c d e"]
    text = "\n".join([*sources, ":set beam 3", *sources, ":n_best 2", *sources]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    capsys.readouterr()
    assert main(["translate", str(model_dir), "--interactive"]) == 0
    out = capsys.readouterr().out.splitlines()
    api = Translator.load(model_dir)
    greedy, beam3 = api.translate(sources), api.translate(sources, beam=3)
    nbest = [f"{i}\t{t.score:.4f}\t{t.text}" for i, hyps in enumerate(api.translate_nbest(sources, beam=3, n_best=2), 8) for t in hyps]  # fmt: skip
    assert out == [*greedy, "beam = 3", *beam3, "n_best = 2", *nbest]
    assert len(set(greedy)) > 1  # the model does not say one thing to everything: the test means something


def test_the_cli_refuses_invalid_startup_options(model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a b\n"))
    assert main(["translate", str(model_dir), "--interactive", "--n-best", "2"]) == 2
    assert "n_best" in capsys.readouterr().err
