"""The `dragoman` command: one subcommand per stage, each a thin call into the library.

dragoman quickstart                 make a toy task, train, translate, score (a few minutes)
dragoman prepare CONFIG             check text files, train tokenizers, store token ids
dragoman train CONFIG [--resume]    train (prepares first when needed)
dragoman translate MODEL_DIR        stdin/file → stdout/file, greedy, beam or sampling
dragoman evaluate ...               sacreBLEU BLEU and chrF of a file or of a model on a test pair
dragoman serve MODEL_DIR            HTTP server (FastAPI) with dynamic batching and a web page at /
dragoman plot MODEL_DIR             training curves from the metrics log (PNG or SVG)
dragoman attention MODEL_DIR TEXT   attention heatmaps of one translation
dragoman diagram CONFIG|MODEL_DIR   Mermaid flowchart of the model's architecture
dragoman export MODEL_DIR --to ctranslate2 OUT_DIR   a CTranslate2 model for deployment
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
    options = _decode_options(args)
    if args.interactive:
        from dragoman.interactive import Session

        if args.input or args.output:
            raise DragomanError("--interactive reads the terminal; it takes no -i/-o files")

        Session(translator, options).run(sys.stdin, sys.stdout)
        return
    texts = _read_input(args.input)
    if translator.decode_config(**options).n_best > 1:  # asked for, or the model's default
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


def cmd_serve(args: argparse.Namespace) -> None:
    from dragoman.server import ServerSettings, serve

    given = {name: getattr(args, name) for name in ServerSettings.model_fields if hasattr(args, name)}
    settings = ServerSettings(**given)  # the options left out keep ServerSettings' defaults
    serve(args.model_dir, settings, host=args.host, port=args.port, checkpoint=args.checkpoint)


def cmd_plot(args: argparse.Namespace) -> None:
    from dragoman.plots import plot_training

    print(plot_training(Path(args.model_dir), Path(args.output) if args.output else None))


def cmd_attention(args: argparse.Namespace) -> None:
    from dragoman.plots import plot_attention
    from dragoman.translator import Translator

    alignment = Translator.load(args.model_dir, args.checkpoint).align(args.text, **_decode_options(args))
    print(alignment.translation.text)
    if not alignment.source:
        raise DragomanError("the text is empty: nothing to translate", fix="give a sentence in quotes")
    if alignment.weights is None:
        raise DragomanError(
            "this model has no attention to draw (model.attention: none)",
            file=Path(args.model_dir) / "config.yaml",
            fix="attention heatmaps need a Transformer or an RNN decoder with attention",
        )
    out = Path(args.output) if args.output else Path(args.model_dir) / "attention.png"
    print(plot_attention(alignment, out, layer=args.layer, head=args.head))


def cmd_diagram(args: argparse.Namespace) -> None:
    from dragoman.diagram import diagram

    text = diagram(Path(args.path))
    if args.format == "markdown":
        text = f"```mermaid\n{text.rstrip()}\n```\n"
    _write_output(args.output, text.rstrip("\n").split("\n"))


def cmd_export(args: argparse.Namespace) -> None:
    from dragoman.export import export_ctranslate2

    out = export_ctranslate2(Path(args.model_dir), Path(args.out_dir), args.quantization, args.checkpoint)
    print(f"CTranslate2 model written to {out}")


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
    p.add_argument(
        "--interactive", action="store_true", help="a prompt with history; `:help` lists the commands"
    )
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

    p = sub.add_parser("serve", help="HTTP server with dynamic batching and a web page")
    p.add_argument("model_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    group = p.add_argument_group("batching and limits (defaults: dragoman.server.ServerSettings)")
    for option, kind, text in [
        ("--max-batch-tokens", int, "source tokens per model call (4096)"),
        ("--max-wait-ms", float, "how long a request waits for others (5)"),
        ("--max-texts", int, "texts per request (64)"),
        ("--max-chars", int, "characters per text (2000)"),
        ("--max-request-bytes", int, "request body size (1000000)"),
        ("--max-beam", int, "largest beam a request may ask for (16)"),
    ]:
        group.add_argument(option, type=kind, default=argparse.SUPPRESS, help=text)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("plot", help="training curves (loss, perplexity, BLEU, learning rate)")
    p.add_argument("model_dir")
    p.add_argument("-o", "--output", help="PNG or SVG file (default: MODEL_DIR/training.png)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("attention", help="attention heatmaps of one translation")
    p.add_argument("model_dir")
    p.add_argument("text")
    p.add_argument("-o", "--output", help="PNG or SVG file (default: MODEL_DIR/attention.png)")
    p.add_argument("--layer", type=int, help="only this decoder layer (default: all)")
    p.add_argument("--head", type=int, help="only this head (default: all)")
    _add_decode_arguments(p)
    p.set_defaults(func=cmd_attention)

    p = sub.add_parser("diagram", help="Mermaid flowchart of a model's architecture")
    p.add_argument("path", metavar="CONFIG_OR_MODEL_DIR")
    p.add_argument("--format", choices=["mermaid", "markdown"], default="mermaid")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.set_defaults(func=cmd_diagram)

    p = sub.add_parser("export", help="export a Transformer model for CTranslate2")
    p.add_argument("model_dir")
    p.add_argument("--to", choices=["ctranslate2"], required=True)
    p.add_argument("out_dir")
    p.add_argument("--quantization", choices=["int8", "int8_float32", "int16", "float16"])
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=cmd_export)
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
