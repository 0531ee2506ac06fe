"""The `dragoman` command: one subcommand per stage, each a thin call into the library.

dragoman quickstart                 make a toy task, train, translate, score (a few minutes)
dragoman prepare CONFIG             check text files, train tokenizers, store token ids
dragoman train CONFIG [--resume]    train (prepares first when needed); on N processes:
                                    torchrun --nproc_per_node=N -m dragoman train CONFIG
dragoman translate MODEL_DIR        stdin/file → stdout/file, greedy, beam or sampling
dragoman classify MODEL_DIR         label and probability per line (task: classify)
dragoman generate MODEL_DIR         continue --prompt with a language model (task: lm)
dragoman chat MODEL_DIR             talk to a dialogue model; it keeps the conversation's last turns
dragoman evaluate ...               BLEU, chrF, ROUGE; accuracy/F1 of a classifier; perplexity of an lm
dragoman serve MODEL_DIR            HTTP server (FastAPI) with dynamic batching and a web page at /
dragoman plot MODEL_DIR             training curves from the metrics log (PNG or SVG)
dragoman attention MODEL_DIR TEXT   attention heatmaps of one translation
dragoman diagram CONFIG|MODEL_DIR   Mermaid flowchart of the model's architecture
dragoman export MODEL_DIR --to ctranslate2 OUT_DIR   a CTranslate2 model for deployment
dragoman embed MODEL_DIR            one vector per input line: pooled encoder states (.npy or text)
dragoman search MODEL_DIR --corpus FILE   the corpus lines nearest to each query (cosine)
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
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "int8"],
        default="fp32",
        help="bf16: bfloat16 weights; int8: dynamically quantized linear layers (CPU)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_embed_arguments(parser: argparse.ArgumentParser, normalize: bool = True) -> None:
    parser.add_argument(
        "--pooling", choices=["mean", "first"], help="of the encoder states (default: model.pooling)"
    )
    if normalize:
        parser.add_argument("--normalize", action="store_true", help="unit vectors (length 1)")
    parser.add_argument(
        "--batch-tokens", type=_positive_int, help="source tokens per batch (default: the config's)"
    )
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
    from dragoman import distributed
    from dragoman.config import load_config
    from dragoman.train import train

    model_dir = train(load_config(args.config), resume=args.resume)
    if distributed.is_main():  # under torchrun, once
        print(f"model saved in {model_dir}")


def cmd_translate(args: argparse.Namespace) -> None:
    from dragoman.translator import Translator

    translator = Translator.load(args.model_dir, args.checkpoint, precision=args.precision)
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


def _metric_names(text: str) -> list[str]:
    from dragoman.metrics import REPORTS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in REPORTS]
    if unknown or not names:
        raise DragomanError(
            f"--metric {text}: {'unknown metric ' + ', '.join(unknown) if unknown else 'no metric named'}",
            fix=f"give a comma-separated list of {', '.join(REPORTS)}, e.g. --metric bleu,rouge",
        )
    return names


def _model_outputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """A seq2seq model's outputs for --src, and notes for the report: how many sources were cut."""
    from dragoman.data.text import read_lines
    from dragoman.translator import Translator

    translator = Translator.load(args.model_dir, args.checkpoint, precision=args.precision)
    sources = read_lines(Path(args.src))
    max_len = translator.config.data.max_len
    long = sum(len(ids) > max_len for ids in translator.src_tok.encode_batch(sources))
    note = f"{long} of {len(sources)} sources longer than {max_len} tokens (data.max_len) were truncated"
    return translator.translate(sources, **_decode_options(args)), [note]


def cmd_chat(args: argparse.Namespace) -> None:
    from dragoman.chat import ChatSession, dialogue_settings
    from dragoman.translator import Translator

    translator = Translator.load(args.model_dir, args.checkpoint)
    dialogue = dialogue_settings(translator.config, args.model_dir, args.turns)
    ChatSession(translator, _decode_options(args), dialogue).run(sys.stdin, sys.stdout)


def _evaluate_other_tasks(args: argparse.Namespace) -> bool:
    """A classifier's accuracy, macro-F1 and confusion matrix on --src (a CSV, or texts with
    --ref labels), or a language model's perplexity of --src; False for a seq2seq model."""
    from dragoman.config import load_config

    config = load_config(Path(args.model_dir) / "config.yaml")
    if config.task == "seq2seq":
        return False
    if not args.src:
        raise DragomanError(f"give --src FILE to evaluate a {config.task} model on")
    if config.task == "classify":
        from dragoman.classify import TextClassifier, read_labelled

        classifier = TextClassifier.load(args.model_dir, args.checkpoint)
        texts, gold, source = read_labelled(config, args.src, args.ref)
        print(classifier.evaluate(texts, gold, source).report())
    else:
        from dragoman.data.text import read_lines
        from dragoman.translator import Translator

        ppl, tokens = Translator.load(args.model_dir, args.checkpoint).perplexity(read_lines(Path(args.src)))
        print(f"perplexity {ppl:.2f} ({tokens} tokens, </s> included)")
    return True


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dragoman.data.text import iter_lines, read_lines
    from dragoman.metrics import report

    if args.model_dir and not args.hyp and _evaluate_other_tasks(args):
        return
    if not args.ref:
        raise DragomanError("give the references: --ref FILE", fix="see `dragoman evaluate --help`")
    metrics = _metric_names(args.metric)
    refs = read_lines(Path(args.ref))
    notes: list[str] = []
    if args.hyp:
        # not read_lines: a model that outputs only empty lines is bad, not an input error
        hyps = list(iter_lines(Path(args.hyp)))
        name = args.hyp
    elif args.model_dir and args.src:
        hyps, notes = _model_outputs(args)
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
    print("\n".join([report(hyps, refs, metrics), *notes]))


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


def cmd_embed(args: argparse.Namespace) -> None:
    from dragoman.embed import Embedder, write_npy

    embedder = Embedder.load(args.model_dir, args.checkpoint)
    texts = _read_input(args.input)
    vectors = embedder.embed(texts, args.pooling, args.normalize, args.batch_tokens)
    if args.output and args.output.endswith(".npy"):
        write_npy(Path(args.output), vectors)
    else:
        _write_output(args.output, [" ".join(f"{x:.9g}" for x in row) for row in vectors.tolist()])


def cmd_search(args: argparse.Namespace) -> None:
    import json

    from dragoman.data.text import check_readable
    from dragoman.embed import Embedder, SemanticSearch

    check_readable(args.corpus)  # before the model loads
    embedder = Embedder.load(args.model_dir, args.checkpoint)
    queries = _read_input(args.input)
    index = SemanticSearch.from_file(embedder, args.corpus, args.index, args.pooling, not args.no_rebuild)
    lines = []
    for query, hits in zip(queries, index.search(queries, args.k)):
        if args.format == "json":
            record = {"query": query, "hits": [vars(hit) for hit in hits]}
            lines.append(json.dumps(record, ensure_ascii=False))
        else:
            lines += [f"> {query}", *(f"{h.rank}\t{h.score:.4f}\t{h.line}\t{h.text}" for h in hits), ""]
    _write_output(args.output, lines)


def cmd_classify(args: argparse.Namespace) -> None:
    from dragoman.classify import TextClassifier

    classifier = TextClassifier.load(args.model_dir, args.checkpoint)
    predictions = classifier.classify(_read_input(args.input))
    if args.all:
        lines = ["\t".join(f"{k}\t{v:.4f}" for k, v in p.probabilities.items()) for p in predictions]
    else:
        lines = [f"{p.label}\t{p.probability:.4f}" for p in predictions]
    _write_output(args.output, lines)


def cmd_generate(args: argparse.Namespace) -> None:
    from dragoman.translator import Translator

    generator = Translator.load(args.model_dir, args.checkpoint)
    if generator.config.task != "lm":
        raise DragomanError(
            f"this model is not a language model (task: {generator.config.task})",
            fix="use `dragoman translate` for an encoder-decoder, or train one with `task: lm`",
        )
    prompts = args.prompt if args.prompt is not None else _read_input(args.input)
    options = _decode_options(args)
    if args.max_tokens is not None:
        options |= {"max_len_a": 0.0, "max_len_b": args.max_tokens}
    results = generator.translate_nbest(prompts, **options)
    if generator.decode_config(**options).n_best > 1:
        lines = [f"{i}\t{t.score:.4f}\t{t.text}" for i, nbest in enumerate(results) for t in nbest]
    else:
        lines = [nbest[0].text for nbest in results]
    _write_output(args.output, lines)


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

    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        epilog="several processes: torchrun --nproc_per_node=N -m dragoman train CONFIG (docs/distributed.md)",
    )
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
        "chat",
        help="talk to a model trained on (context → reply) pairs; `:help` lists the commands",
        description="Each line you type is a turn; the model replies to the last turns, joined as its "
        "config's dialogue section says (turns, separator). Piped input works: one turn per line.",
    )
    p.add_argument("model_dir")
    p.add_argument("--turns", type=int, help="previous turns in a context (default: dialogue.turns)")
    _add_decode_arguments(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "evaluate",
        help="BLEU, chrF (sacreBLEU) or ROUGE of hypotheses or of a model on a test pair; "
        "a classifier's accuracy, macro-F1 and confusion matrix; a language model's perplexity",
    )
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--hyp", help="hypothesis file")
    p.add_argument(
        "--src", help="source file to translate with MODEL_DIR; a classifier's texts (or CSV); an lm's text"
    )
    p.add_argument("--ref", help="reference file; a classifier's gold labels (not with a CSV --src)")
    p.add_argument(
        "--metric",
        default="bleu,chrf",
        help="comma-separated, reported in this order: bleu, chrf (sacreBLEU), rouge (ROUGE-1/2/L F1, "
        "rouge-score with the Porter stemmer); default: bleu,chrf",
    )
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

    p = sub.add_parser(
        "embed", help="one vector per input line: the encoder's states, pooled (any encoder model)"
    )
    p.add_argument("model_dir")
    p.add_argument("-i", "--input", help="input file (default: stdin)")
    p.add_argument(
        "-o",
        "--output",
        help="OUT.npy: a float32 numpy array (N, D); otherwise text, one line of D floats per input "
        "line (default: stdout). An empty line gets the zero vector",
    )
    _add_embed_arguments(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "search",
        help="the corpus lines nearest to each query (cosine similarity of embeddings)",
        description="For each query (a line of stdin or -i FILE), the k corpus lines whose embeddings "
        "are nearest by cosine similarity. Text output: a line '> QUERY', then one line per hit, "
        "'RANK<TAB>SCORE<TAB>LINE<TAB>TEXT' (rank 1 = nearest, LINE = 1-based line number in the "
        "corpus), then an empty line. --format json: one object per query and line, "
        '{"query": ..., "hits": [{"rank", "score", "line", "text"}]}. Empty corpus lines are never '
        "hits; an empty query has none.",
    )
    p.add_argument("model_dir")
    p.add_argument("--corpus", required=True, help="the lines to search, one per line (UTF-8)")
    p.add_argument("-i", "--input", help="queries, one per line (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("-k", type=_positive_int, default=5, help="hits per query (default: 5)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument(
        "--index",
        metavar="FILE.npy",
        help="cache of the corpus vectors, with FILE.npy.json recording the corpus and model they "
        "came from; reused while both are unchanged, rebuilt when stale",
    )
    p.add_argument("--no-rebuild", action="store_true", help="refuse a stale --index instead of rebuilding")
    _add_embed_arguments(p, normalize=False)
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("classify", help="label and probability of each input line (task: classify)")
    p.add_argument("model_dir")
    p.add_argument("-i", "--input", help="input file (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--all", action="store_true", help="every label with its probability")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("generate", help="continue prompts with a language model (task: lm)")
    p.add_argument("model_dir")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable; '' starts from nothing)")
    p.add_argument("-i", "--input", help="prompts, one per line (default: stdin, without --prompt)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--max-tokens", type=int, help="new tokens at most (sets max_len_a 0, max_len_b N)")
    _add_decode_arguments(p)
    p.set_defaults(func=cmd_generate)
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
