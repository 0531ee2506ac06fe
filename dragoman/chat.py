"""Dialogue as sequence-to-sequence: (context → reply) pairs, and `dragoman chat MODEL_DIR`.

A conversation is a list of turns, one per change of speaker (`merge_turns`). The model reads a
*context*, the last N turns joined by a separator (`context`), and writes the next turn. The pair
builder (`dialogue_pairs`, used by examples/chitchat/make_pairs.py) and the chat loop both go
through `merge_turns` and `context`, with N and the separator from the config's `dialogue` section,
so a model is always asked in the form it was trained on.

`dragoman chat` is the `translate --interactive` session (dragoman/interactive.py: the prompt,
line editing and history file, the `:set` decoding options, Ctrl-C and Ctrl-D) with a conversation
behind it: each line is the user's turn, the model's reply is the next one, `:reset` starts over.
With a seed, the n-th reply of a session (from 0) samples with seed + n: the session is repeatable,
and the replies do not all start from the same random draws.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dragoman.config import DialogueConfig
from dragoman.errors import DragomanError
from dragoman.interactive import Session

log = logging.getLogger("dragoman")

USER, MODEL = "you", "model"

HELP = """\
TEXT               say TEXT; the model replies from the last turns of the conversation
:reset             forget the conversation and start a new one
:history           the conversation so far
:context           the model input the last reply was made from
:turns N           previous turns in a context (default: the model's dialogue.turns)
:set KEY VALUE     change a decoding option, e.g. :set sampling true, :set top_p 0.9, :set seed none
:KEY VALUE         the same, e.g. :sampling true, :temperature 0.7, :beam 5
:show              the decoding options in effect (* = set on the command line or here)
:defaults          back to the decoding options the session started with
:time on|off       print how long each reply took
:help              this list
:quit, :q          leave (so do Ctrl-D and the end of piped input)"""


def clean(text: str) -> str:
    """One line with single spaces: how a turn is stored (newlines and tabs would break the files)."""
    return " ".join(text.split())


def merge_turns(messages: Iterable[tuple[str, str]]) -> list[str]:
    """The turns of a conversation given as (speaker, text) messages in order.

    Consecutive messages of one speaker are one turn, joined with a space: in chat data a speaker
    often sends several short messages in a row, and the reply answers all of them. Empty messages
    are dropped (so the messages around one merge when they share a speaker).
    """
    turns: list[str] = []
    last = None
    for speaker, text in messages:
        text = clean(text)
        if not text:
            continue
        if speaker == last:
            turns[-1] = f"{turns[-1]} {text}"
        else:
            turns.append(text)
        last = speaker
    return turns


def context(history: Sequence[str], turns: int, separator: str) -> str:
    """The model's input: the last `turns` turns of `history` (all of them when there are fewer),
    oldest first, joined by `separator`."""
    if turns < 1:
        raise ValueError(f"turns must be at least 1, got {turns}")
    return separator.join(history[-turns:])


def dialogue_pairs(conversation_turns: Sequence[str], turns: int, separator: str) -> list[tuple[str, str]]:
    """(context, reply) for every turn after the first: each turn is the reply to the ones before it."""
    return [
        (context(conversation_turns[:i], turns, separator), conversation_turns[i])
        for i in range(1, len(conversation_turns))
    ]


def dialogue_settings(config: Any, model_dir: str | Path, turns: int | None = None) -> DialogueConfig:
    """How the model's pairs were built (its config's `dialogue` section), `turns` overriding."""
    dialogue = config.dialogue
    if dialogue is None:
        log.warning(
            "%s has no dialogue section: contexts use the defaults (%d turns, separator %r)",
            Path(model_dir) / "config.yaml",
            DialogueConfig().turns,
            DialogueConfig().separator,
        )
        dialogue = DialogueConfig()
    if turns is not None:
        if turns < 1:
            raise DragomanError(f"--turns must be at least 1, got {turns}", fix="e.g. --turns 3")
        dialogue = dialogue.model_copy(update={"turns": turns})
    return dialogue


class ChatSession(Session):
    """A conversation with a Translator: the interactive session, where each input line is a turn
    and the reply is made from the context of the last `dialogue.turns` turns."""

    history_file = Path("~/.dragoman_chat_history")
    banner = "dragoman chat: say something, :help for commands, :q to quit"
    help_text = HELP

    def __init__(self, translator: Any, options: dict[str, Any], dialogue: DialogueConfig) -> None:
        super().__init__(translator, options)
        self.dialogue = dialogue
        self.messages: list[tuple[str, str]] = []  # (USER or MODEL, text), as said
        self.last_context = ""
        self.replies = 0  # in this session, :reset or not: reply n samples with seed + n
        self.commands |= {
            "reset": self.reset_conversation,
            "defaults": self.reset_options,
            "history": self.show_conversation,
            "context": self.show_context,
            "turns": self.set_turns,
        }

    def translate(self, text: str) -> None:
        """Reply to `text` (the user's turn)."""
        self.messages.append((USER, text))
        self.last_context = self.fit(merge_turns(self.messages))
        options = dict(self.options)
        if options.get("seed") is not None:  # repeatable, but each reply draws its own random numbers
            options["seed"] = int(options["seed"]) + self.replies
        reply = self.translator.translate([self.last_context], **options)[0]
        self.replies += 1
        if reply.strip():  # an empty reply is no turn: the user's next line continues theirs
            self.messages.append((MODEL, reply))
        self.say(reply)

    def fit(self, turns: list[str]) -> str:
        """The context of the last `dialogue.turns` turns, with fewer when it would be longer than
        the model's data.max_len tokens (training dropped such pairs; cutting the end would lose
        the newest turn). The newest turn alone is always kept; the translator truncates it."""
        max_len = self.translator.config.data.max_len
        for n in range(min(self.dialogue.turns, len(turns)), 0, -1):
            text = context(turns, n, self.dialogue.separator)
            if len(self.translator.src_tok.encode(text)) <= max_len:
                break
        return text

    def reset_conversation(self, args: list[str]) -> None:
        self.messages, self.last_context = [], ""
        self.say("(a new conversation)")

    def show_conversation(self, args: list[str]) -> None:
        self.say(*(f"{speaker}: {text}" for speaker, text in self.messages))

    def show_context(self, args: list[str]) -> None:
        self.say(self.last_context or "(no reply yet)")

    def set_turns(self, args: list[str]) -> None:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            self.say("error: usage: :turns N, with N ≥ 1")
            return
        self.dialogue = self.dialogue.model_copy(update={"turns": int(args[0])})
        self.say(f"turns = {self.dialogue.turns}")
