"""Labels in, labels out: a trained classifier (task: classify) on lists of strings.

from dragoman.classify import TextClassifier
classifier = TextClassifier.load("runs/sentiment")
for p in classifier.classify(["what a great phone", "meh"]):
    print(p.label, p.probability)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dragoman.data.batches import pad
from dragoman.data.labels import Labels
from dragoman.errors import DragomanError
from dragoman.metrics import classification_scores, confusion_matrix
from dragoman.translator import Translator, load_model, truncate


@dataclass
class Prediction:
    label: str
    probability: float
    probabilities: dict[str, float]  # every label's, in the labels' order


@dataclass
class Evaluation:
    accuracy: float
    f1: float  # macro
    labels: list[str]
    confusion: list[list[int]]  # [gold][predicted]
    majority: str  # the most frequent gold label, and the accuracy of always answering it
    majority_accuracy: float
    majority_f1: float

    def report(self) -> str:
        width = max(8, *(len(label) for label in self.labels))
        header = " " * width + "  " + " ".join(f"{label[:width]:>{width}}" for label in self.labels)
        rows = [
            f"{label:>{width}}  " + " ".join(f"{n:>{width}}" for n in counts)
            for label, counts in zip(self.labels, self.confusion)
        ]
        return "\n".join(
            [
                f"accuracy {self.accuracy:.2f}  macro-F1 {self.f1:.2f}  ({sum(map(sum, self.confusion))} texts)",
                f"majority baseline ({self.majority!r} always): accuracy {self.majority_accuracy:.2f}  "
                f"macro-F1 {self.majority_f1:.2f}",
                "confusion matrix (rows: true label, columns: predicted):",
                header,
                *rows,
            ]
        )


def read_labelled(
    config, path: str | Path, labels_path: str | Path | None = None
) -> tuple[list[str], list[str], Path]:
    """Texts and gold labels for evaluation: a CSV with the config's text/label columns, or a text
    file with a parallel labels file. Returns them with the file the labels' line numbers refer to."""
    from dragoman.data.text import iter_csv, iter_lines, read_lines

    path = Path(path)
    if labels_path is None:
        if path.suffix.lower() != ".csv":
            raise DragomanError(
                "give the gold labels: --ref LABELS (one per line), or a CSV with text and label columns",
                file=path,
            )
        rows = [fields for _, fields in iter_csv(path, [config.data.text_column, config.data.label_column])]
        return [r[0] for r in rows], [r[1] for r in rows], path
    texts, gold = read_lines(path), list(iter_lines(labels_path))
    if len(texts) != len(gold):
        raise DragomanError(
            f"line counts differ: {path} has {len(texts)} lines, {labels_path} has {len(gold)}",
            fix="one label per text, line by line",
        )
    return texts, gold, Path(labels_path)


class TextClassifier:
    """Classifies lists of strings with a classifier model, its tokenizer and its labels."""

    def __init__(self, model, config, tokenizer, labels: Labels) -> None:
        if config.task != "classify":
            raise DragomanError(
                f"this model is not a classifier (task: {config.task})",
                fix="train one with `task: classify` (see configs/sentiment.yaml)",
            )
        self.model, self.config, self.tokenizer, self.labels = model, config, tokenizer, labels
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> TextClassifier:
        return cls(*load_model(model_dir, checkpoint, device))

    @torch.inference_mode()
    def probabilities(self, texts: list[str], batch_tokens: int | None = None) -> np.ndarray:
        """(N, C) class probabilities; an empty text gets the classifier's answer for no words."""
        ids = truncate(self.tokenizer.encode_batch(texts), self.config.data.max_len)
        out = np.zeros((len(texts), self.labels.vocab_size), dtype=np.float32)
        batches = Translator.batches(ids, batch_tokens or self.config.decode.batch_tokens, keep_empty=True)
        for batch in batches:
            src = pad([np.asarray(ids[i], dtype=np.int64) for i in batch]).to(self.device)
            out[batch] = self.model(src).float().softmax(-1).cpu().numpy()
        return out

    def classify(self, texts: list[str]) -> list[Prediction]:
        probs = self.probabilities(texts)
        names = self.labels.names
        return [
            Prediction(names[int(p.argmax())], float(p.max()), dict(zip(names, map(float, p)))) for p in probs
        ]

    def evaluate(self, texts: list[str], gold: list[str], source: str | Path | None = None) -> Evaluation:
        """Accuracy, macro-F1 and the confusion matrix against gold labels (an unknown one is an error
        naming `source` and its line)."""
        if len(texts) != len(gold):
            raise DragomanError(f"{len(texts)} texts but {len(gold)} labels", file=source)
        gold_ids = [self.labels.id(label.strip(), source, i + 1) for i, label in enumerate(gold)]
        predicted = self.probabilities(texts).argmax(-1).tolist()
        classes = self.labels.vocab_size
        scores = classification_scores(gold_ids, predicted, classes)
        majority = max(range(classes), key=gold_ids.count)
        baseline = classification_scores(gold_ids, [majority] * len(gold_ids), classes)
        return Evaluation(
            scores["accuracy"],
            scores["f1"],
            self.labels.names,
            confusion_matrix(gold_ids, predicted, classes),
            self.labels.names[majority],
            baseline["accuracy"],
            baseline["f1"],
        )
