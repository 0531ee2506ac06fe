"""The `dragoman` command: one subcommand per stage, each a thin call into the library.

dragoman quickstart                 make a toy task, train, translate, score (a few minutes)
dragoman prepare CONFIG             check text files, train tokenizers, store token ids
dragoman train CONFIG [--resume]    train (prepares first when needed)
dragoman translate MODEL_DIR        stdin/file → stdout/file, greedy, beam or sampling
dragoman evaluate ...               sacreBLEU BLEU and chrF of a file or of a model on a test pair
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dragoman.errors import DragomanError

log = logging.getLogger("dragoman")


def _decode_options(args: argparse.Namespace) -> dict:
    names = [
        "beam",
        "n_best",
        "length_penalty",
        "max_len_a",
        "max_len_b",
        "batch_tokens",
        "temperature",
        "top_k",
        "top_p",
        "seed",
    ]
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.sample:
        options["sampling"] = True
    return options


def _add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (default: the config's decode section)")
    group.add_argument("--beam", type=int, help="beam size; 1 = greedy")
    group.add_argument("--n-best", type=int, help="outputs per input (≤ beam), tab-separated with scores")
    group.add_argument("--length-penalty", type=float, help="GNMT alpha")
    group.add_argument("--max-len-a", type=float, help="output ≤ a × input tokens + b")
    group.add_argument("--max-len-b", type=int)
    group.add_argument("--batch-tokens", type=int)
    group.add_argument("--sample", action="store_true", help="sample instead of search")
    group.add_argument("--temperature", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--top-p", type=float)
    group.add_argument("--seed", type=int)
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")


def _read_input(path: str | None) -> list[str]:
    from dragoman.data.text import read_lines

    if path is None or path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    return read_lines(Path(path))


def _write_output(path: str | None, lines: list[str]) -> None:
    from dragoman.io import atomic_write_text

    text = "".join(line + "\n" for line in lines)
    if path is None or path == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(Path(path), text)


def cmd_prepare(args: argparse.Namespace) -> None:
    from dragoman.config import load_config
    from dragoman.data.prepare import prepare

    prepare(load_config(args.config), force=True)  # logs one line per split


def cmd_train(args: argparse.Namespace) -> None:
    from dragoman.config import load_config
    from dragoman.train import train

    model_dir = train(load_config(args.config), resume=args.resume)
    print(f"model saved in {model_dir}")


def cmd_translate(args: argparse.Namespace) -> None:
    from dragoman.translator import Translator

    translator = Translator.load(args.model_dir, args.checkpoint)
    texts = _read_input(args.input)
    options = _decode_options(args)
    if options.get("n_best", 1) > 1:
        results = translator.translate_nbest(texts, **options)
        lines = [f"{i}\t{t.score:.4f}\t{t.text}" for i, nbest in enumerate(results) for t in nbest]
    else:
        lines = translator.translate(texts, **options)
    _write_output(args.output, lines)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dragoman.data.text import iter_lines, read_lines
    from dragoman.metrics import report

    refs = read_lines(Path(args.ref))
    if args.hyp:
        # not read_lines: a model that outputs only empty lines is bad, not an input error
        hyps = list(iter_lines(Path(args.hyp)))
        name = args.hyp
    elif args.model_dir and args.src:
        from dragoman.translator import Translator

        hyps = Translator.load(args.model_dir, args.checkpoint).translate(
            read_lines(Path(args.src)), **_decode_options(args)
        )
        name = args.src
    else:
        raise DragomanError(
            "give --hyp FILE, or MODEL_DIR with --src FILE", fix="see `dragoman evaluate --help`"
        )
    if len(hyps) != len(refs):
        raise DragomanError(
            f"line counts differ: {name} has {len(hyps)} lines, {args.ref} has {len(refs)}",
            fix="hypotheses and references must be parallel, one per line",
        )
    print(report(hyps, refs))


def cmd_quickstart(args: argparse.Namespace) -> None:
    from dragoman.quickstart import run

    run(Path(args.workdir), minutes=args.minutes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dragoman", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quickstart", help="train and try a small model on a built-in toy task")
    p.add_argument("--workdir", default="runs/quickstart")
    p.add_argument("--minutes", type=float, default=2.5, help="training time budget")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("prepare", help="check data, train tokenizers, store token ids")
    p.add_argument("config")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate lines from stdin or a file")
    p.add_argument("model_dir")
    p.add_argument("-i", "--input", help="input file (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    _add_decode_arguments(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser(
        "evaluate", help="BLEU and chrF (sacreBLEU) of hypotheses, or of a model on a test pair"
    )
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--hyp", help="hypothesis file")
    p.add_argument("--src", help="source file to translate with MODEL_DIR")
    p.add_argument("--ref", required=True, help="reference file")
    _add_decode_arguments(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except DragomanError as exc:
        if args.verbose:
            raise
        print(f"dragoman: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dragoman: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
