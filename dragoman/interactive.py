"""`dragoman translate MODEL_DIR --interactive`: a prompt that translates each line as it is typed.

Lines starting with `:` are commands (`:help` lists them); `:set beam 5` or `:beam 5` changes the
decoding options for the next lines, checked like the config file. On a terminal there is a `> `
prompt, line editing and a history kept in ~/.dragoman_history (when Python has readline); piped
input gets no prompt, so `printf 'a b\n:beam 3\na b\n' | dragoman translate M --interactive` works.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from dragoman.config import DecodeConfig
from dragoman.errors import DragomanError

HELP = """\
TEXT               translate TEXT with the current options
:set KEY VALUE     change a decoding option, e.g. :set beam 5, :set sampling true, :set seed none
:KEY VALUE         the same, e.g. :beam 5, :temperature 0.7
:show              the decoding options in effect (* = set on the command line or here)
:reset             back to the options the session started with
:history           this session's inputs and outputs
:time on|off       print how long each translation took
:help              this list
:quit, :q          leave (so do Ctrl-D and the end of piped input)"""

_TYPES = {int: "an integer", float: "a number", bool: "true or false"}
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def allowed(key: str) -> str:
    """What decoding option `key` takes, in words: 'an integer ≥ 1', 'a number > 0.0 and ≤ 1.0'."""
    field = DecodeConfig.model_fields[key]
    limits = [(name, getattr(m, name, None)) for m in field.metadata for name in _BOUNDS]
    bounds = [f"{_BOUNDS[name]} {limit}" for name, limit in limits if limit is not None]
    return " ".join([_TYPES.get(field.annotation, "an integer or none"), " and ".join(bounds)]).strip()


class Session:
    """A read-translate-print loop over a Translator (anything with `translate_nbest` and
    `decode_config`), holding the decoding options that `:set` changes."""

    history_file = Path("~/.dragoman_history")
    banner = "dragoman interactive: type a sentence to translate, :help for commands, :q to quit"
    help_text = HELP

    def __init__(self, translator: Any, options: dict[str, Any]) -> None:
        translator.decode_config(**options)  # bad command-line options fail before the first prompt
        self.translator = translator
        self.startup, self.options = dict(options), dict(options)
        self.history: list[tuple[str, list[str]]] = []  # (input, output lines)
        self.timing = False
        self.out: TextIO = sys.stdout
        self.commands = {
            "help": self.show_help,
            "set": self.set_option,
            "show": self.show_options,
            "reset": self.reset_options,
            "history": self.show_history,
            "time": self.set_timing,
        }

    def run(self, infile: TextIO, outfile: TextIO) -> None:
        """Translate lines and answer commands until `:quit` or the end of the input."""
        self.out, tty = outfile, infile.isatty()
        readline = self._load_history() if tty and infile is sys.stdin else None
        if tty:
            self.say(self.banner)
        try:
            while True:
                try:
                    line = self._read(infile, tty, readline)
                    if not line:  # the end of the input, or Ctrl-D
                        if tty:
                            self.say("")  # the shell's prompt goes on a line of its own
                        break
                    if not self.handle(line.strip()):
                        break
                except KeyboardInterrupt:  # Ctrl-C drops the line (or the translation), not the session
                    if not tty:
                        raise
                    self.say("")
        finally:
            if readline:
                self._save_history(readline)

    def _read(self, infile: TextIO, tty: bool, readline: Any) -> str:
        """The next line with its newline, or "" at the end of the input."""
        if readline:  # input(), not infile.readline(), is what edits lines with readline
            try:
                return input("> ") + "\n"
            except EOFError:
                return ""
        self.out.write("> " if tty else "")
        self.out.flush()
        return infile.readline()

    def handle(self, line: str) -> bool:
        """Act on one stripped input line; False means quit."""
        if line and not line.startswith(":"):
            try:
                self.translate(line)
            except DragomanError as exc:
                self.say(f"error: {exc}")
        elif line:
            name, *args = line[1:].split() or [""]
            name = name.replace("-", "_")
            if name in ("quit", "q", "exit"):
                return False
            if name in DecodeConfig.model_fields:
                self.set_option([name, *args])
            elif name in self.commands:
                self.commands[name](args)
            else:
                self.say(f"error: unknown command :{name}; :help lists the commands")
        return True

    def translate(self, text: str) -> None:
        start = time.perf_counter()
        n_best = self.translator.decode_config(**self.options).n_best
        hyps = self.translator.translate_nbest([text], **self.options)[0]
        if n_best > 1:  # as `dragoman translate --n-best` prints them: input number, score, text
            lines = [f"{len(self.history)}\t{h.score:.4f}\t{h.text}" for h in hyps]
        else:
            lines = [hyps[0].text]
        self.history.append((text, lines))
        self.say(*lines)
        if self.timing:
            self.say(f"({time.perf_counter() - start:.3f} s)")

    def set_option(self, args: list[str]) -> None:
        if len(args) != 2:
            self.say("error: usage: :set KEY VALUE, e.g. :set beam 5")
            return
        key, value = args[0].replace("-", "_"), args[1]
        if key not in DecodeConfig.model_fields:
            self.say(f"error: unknown option {key}; options: {', '.join(DecodeConfig.model_fields)}")
            return
        options = {**self.options, key: None if value.lower() in ("none", "null") else value}
        try:
            decode = self.translator.decode_config(**options)
        except DragomanError as exc:
            self.say(f"error: {key} {value} refused ({exc}); {key} takes {allowed(key)}; options unchanged")
            return
        self.options = {**options, key: getattr(decode, key)}  # the parsed value: 5, not "5"
        self.say(f"{key} = {self.options[key]}")

    def show_options(self, args: list[str]) -> None:
        for key, value in self.translator.decode_config(**self.options).model_dump().items():
            self.say(f"{key:<15}{value}{' *' if key in self.options else ''}")

    def reset_options(self, args: list[str]) -> None:
        self.options = dict(self.startup)
        self.say("options reset to the startup ones")

    def show_history(self, args: list[str]) -> None:
        for i, (text, lines) in enumerate(self.history):
            self.say(f"[{i}] {text}", *(f"    {line}" for line in lines))

    def set_timing(self, args: list[str]) -> None:
        if args not in (["on"], ["off"]):
            self.say("error: usage: :time on, or :time off")
            return
        self.timing = args == ["on"]
        self.say(f"time {args[0]}")

    def show_help(self, args: list[str]) -> None:
        self.say(self.help_text)

    def say(self, *lines: str) -> None:
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()

    def _load_history(self) -> Any:
        """The readline module with the saved history loaded, or None without readline."""
        try:
            import readline
        except ImportError:  # e.g. Windows: a plain prompt, no history
            return None
        try:
            readline.read_history_file(self.history_file.expanduser())
        except OSError:  # no history yet
            pass
        readline.set_history_length(1000)
        return readline

    def _save_history(self, readline: Any) -> None:
        try:
            readline.write_history_file(self.history_file.expanduser())
        except OSError as exc:
            print(f"dragoman: history not saved: {exc}", file=sys.stderr)
