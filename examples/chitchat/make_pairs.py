"""(context → reply) pairs from the Chit-Chat Challenge dataset (`pip install chitchat-dataset`,
MIT licence; BYU PCC lab): ~7k English conversations between two people, each on a prompt.

    python examples/chitchat/make_pairs.py runs/chitchat-data --config configs/chitchat.yaml

writes {train,dev,test}.{context,reply} into the output directory, one pair per line. The data:
`dataset.json` maps a conversation id to {"prompt", "ratings", "start", "messages"}, where
`messages` is a list of groups of messages one sender sent in a row, each {"sender", "text",
"timestamp"}. A conversation's messages are flattened to (sender, text) in order and merged by
`dragoman.chat.merge_turns` (consecutive messages of one sender make one turn, joined with a space;
empty ones are dropped), then every turn after the first is the reply to the last `turns` turns
before it (`dragoman.chat.dialogue_pairs`). The prompt is not part of the context: it was shown to
the people, not said.

Conversations with fewer than two turns (3,151; in 3,150 only one person wrote) give no pair and are
left out. The rest are split by conversation, in a seeded random order, into --dev and --test
conversations (500 each) and the training rest, so no conversation is in two splits.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path

from dragoman.chat import dialogue_pairs, merge_turns
from dragoman.config import DialogueConfig, load_config
from dragoman.errors import DragomanError
from dragoman.io import atomic_write_text


def dataset_path() -> Path:
    """chitchat_dataset's dataset.json, found beside the installed package (not imported: its
    loaders read the whole file at import time of each class)."""
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or spec.origin is None:
        raise DragomanError(
            "the chitchat_dataset package is not installed",
            fix='pip install -c constraints.txt -e ".[examples]", or give --dataset PATH',
        )
    return Path(spec.origin).parent / "dataset.json"


def conversations(path: Path) -> dict[str, list[str]]:
    """Conversation id → its turns, for the conversations with at least two turns."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DragomanError(f"cannot read the dataset: {exc}", file=path) from None
    result = {}
    for key in sorted(data):  # sorted: the split depends on the seed only, not on the file's order
        messages = [(m["sender"], m["text"]) for group in data[key]["messages"] for m in group]
        turns = merge_turns(messages)
        if len(turns) >= 2:
            result[key] = turns
    return result


def split(keys: list[str], dev: int, test: int, seed: int) -> dict[str, list[str]]:
    order = list(keys)
    random.Random(seed).shuffle(order)
    if dev + test >= len(order):
        raise DragomanError(f"--dev {dev} and --test {test} leave no conversation to train on")
    return {"dev": order[:dev], "test": order[dev : dev + test], "train": order[dev + test :]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir")
    parser.add_argument("--config", help="take --turns and --separator from this config's dialogue section")
    parser.add_argument("--turns", type=int, default=DialogueConfig().turns, help="turns in a context (3)")
    parser.add_argument("--separator", default=DialogueConfig().separator, help="between turns (' | ')")
    parser.add_argument("--dev", type=int, default=500, help="conversations in dev (500)")
    parser.add_argument("--test", type=int, default=500, help="conversations in test (500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dataset", help="dataset.json (default: the installed chitchat_dataset's)")
    args = parser.parse_args(argv)
    try:
        dialogue = DialogueConfig(turns=args.turns, separator=args.separator)
        if args.config:
            dialogue = load_config(args.config).dialogue or dialogue
        convs = conversations(Path(args.dataset) if args.dataset else dataset_path())
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, keys in split(list(convs), args.dev, args.test, args.seed).items():
            pairs = [
                p for key in keys for p in dialogue_pairs(convs[key], dialogue.turns, dialogue.separator)
            ]
            atomic_write_text(out / f"{name}.context", "".join(c + "\n" for c, _ in pairs))
            atomic_write_text(out / f"{name}.reply", "".join(r + "\n" for _, r in pairs))
            print(f"{name}: {len(keys)} conversations, {len(pairs)} pairs")
        print(f"contexts of {dialogue.turns} turns joined by {dialogue.separator!r}, in {out}")
    except DragomanError as exc:
        print(f"make_pairs: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
