"""Pictures of a model: its training curves, and the attention behind one translation.

`plot_training` reads `MODEL_DIR/metrics.jsonl` (one JSON object a line, written by the training
loop: `{"kind": "train", "step", "loss", "lr", ...}` every `train.log_every` steps and
`{"kind": "valid", "step", "loss", "ppl", "bleu", "chrf"}` at each validation) and draws four
panels against the step: loss, perplexity, BLEU/chrF and the learning rate.

`plot_attention` draws the source × target attention of a `translator.Alignment` as heatmaps:
one row per decoder layer and one column per head (a Transformer's cross-attention), or a single
map (an RNN decoder's attention, Bahdanau et al., 2015).

Both use matplotlib's object API (`Figure`, no pyplot): no pyplot state and no display needed. The image
is rendered in memory and written atomically, so a reader never sees half a file; the suffix of the
output path (.png or .svg) picks the format.
"""

from __future__ import annotations

import io
import json
import logging
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from dragoman.errors import DragomanError
from dragoman.io import atomic_write_bytes

if TYPE_CHECKING:  # the translator brings in torch, which `dragoman plot` does not need
    from dragoman.translator import Alignment

log = logging.getLogger("dragoman")

FORMATS = {".png": "png", ".svg": "svg"}
DPI = 110
# Attention heatmaps: the size of one token's cell, and the cap on the whole figure (inches).
CELL = 0.3
MAX_FIGURE = 22.0


# ---------------------------------------------------------------- training curves


def plot_training(model_dir: Path, out: Path | None = None) -> Path:
    """Draw `model_dir`'s training curves to `out` (default `model_dir/training.png`); returns `out`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DragomanError(
            "model directory not found", file=model_dir, fix="train one with `dragoman train CONFIG`"
        )
    out = model_dir / "training.png" if out is None else Path(out)
    fmt = _format(out)
    records = read_metrics(model_dir / "metrics.jsonl")
    name = "/".join(model_dir.resolve().parts[-2:])  # runs/quickstart/model → quickstart/model
    _save(_training_figure(records, name), out, fmt)
    return out


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics log. A broken last line (a run killed mid-write) is skipped with a
    warning; a broken line anywhere else is an error naming it."""
    if not path.is_file():
        raise DragomanError(
            "no metrics log", file=path, fix="train the model first; the log is written during training"
        )
    lines = [(n, text) for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    lines = [(n, text) for n, text in lines if text.strip()]
    records = []
    for n, text in lines:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            if n == lines[-1][0]:
                log.warning("%s:%d: skipping a truncated last line (an interrupted run?)", path, n)
                continue
            raise DragomanError(
                f"not valid JSON ({exc.msg}, column {exc.colno})",
                file=path,
                line=n,
                fix="repair or delete this line",
            ) from None
        if not isinstance(record, dict) or not _is_number(record.get("step")):
            raise DragomanError(
                'not a metrics record (a JSON object with "kind" and a numeric "step")',
                file=path,
                line=n,
                fix="repair or delete this line",
            )
        records.append(record)
    if not records:
        raise DragomanError(
            "the metrics log has no records yet",
            file=path,
            fix="train for at least train.log_every steps",
        )
    return records


def _series(records: list[dict], kind: str, key: str) -> tuple[list[float], list[float]]:
    """Steps and values of `key` in the records of `kind`. Records without a finite number there
    (no such key, a NaN loss) are left out."""
    points = [(r["step"], r.get(key)) for r in records if r.get("kind") == kind]
    points = [(s, float(v)) for s, v in points if _is_number(v) and math.isfinite(v)]
    return [s for s, _ in points], [v for _, v in points]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _training_figure(records: list[dict], name: str) -> Figure:
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    (loss, ppl), (scores, lr) = fig.subplots(2, 2, sharex=True)
    fig.suptitle(f"training of {_escape(name)}", fontsize=13)

    _line(loss, _series(records, "train", "loss"), "train", alpha=0.8)
    _line(loss, _series(records, "valid", "loss"), "valid", marker="o")
    loss.set_title("loss (train: label-smoothed)")

    steps, train_loss = _series(records, "train", "loss")
    train_ppl = [math.exp(min(v, 50.0)) for v in train_loss]  # capped like the dev perplexity
    _line(ppl, (steps, train_ppl), "exp(train loss)", alpha=0.6, linestyle="--")
    _line(ppl, _series(records, "valid", "ppl"), "valid", marker="o")
    ppl.set_title("perplexity")
    low, high = ppl.dataLim.intervaly
    if ppl.has_data() and 0 < low and high > 20 * low:  # log scale only where it spans decades
        ppl.set_yscale("log")

    _line(scores, _series(records, "valid", "bleu"), "BLEU", marker="o")
    _line(scores, _series(records, "valid", "chrf"), "chrF", marker="s")
    scores.set_title("dev BLEU and chrF")

    _line(lr, _series(records, "train", "lr"), None)
    lr.set_title("learning rate")
    lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))

    for ax in (loss, ppl, scores, lr):
        ax.grid(True, alpha=0.3)
        if not ax.has_data():
            ax.text(0.5, 0.5, "not in the log", ha="center", va="center", transform=ax.transAxes)
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=9)
    for ax in (scores, lr):
        ax.set_xlabel("step")
    return fig


def _line(ax, series: tuple[list[float], list[float]], label: str | None, **style) -> None:
    steps, values = series
    if len(steps) < 3:  # a line needs two points; show them as points
        style.setdefault("marker", "o")
    if steps:
        ax.plot(steps, values, label=label, markersize=4, **style)


# ---------------------------------------------------------------- attention heatmaps


def plot_attention(
    alignment: Alignment, out: Path, layer: int | None = None, head: int | None = None
) -> Path:
    """Draw the attention of `alignment` to `out`: every decoder layer × head, or the one `layer`
    and/or `head` chosen (0-based). Returns `out`."""
    out = Path(out)
    fmt = _format(out)
    if alignment.weights is None:
        raise DragomanError(
            "this translation has no attention to draw",
            fix="attention heatmaps need a Transformer or an RNN decoder with attention",
        )
    weights = np.asarray(alignment.weights, dtype=np.float32)  # (layers, heads, T, S)
    expected = (len(alignment.target), len(alignment.source))
    if weights.ndim != 4 or weights.shape[2:] != expected:
        raise ValueError(
            f"weights of shape {weights.shape}, expected (layers, heads, {expected[0]}, {expected[1]})"
        )
    layers = _choose(layer, weights.shape[0], "layer", "decoder layer")
    heads = _choose(head, weights.shape[1], "head", "attention head")
    titled = weights.shape[:2] != (1, 1)  # an RNN's single map needs no "layer 0, head 0"
    _save(_attention_figure(alignment, weights, layers, heads, titled), out, fmt)
    return out


def _choose(index: int | None, count: int, option: str, what: str) -> list[int]:
    if index is None:
        return list(range(count))
    if not 0 <= index < count:
        raise DragomanError(
            f"--{option} {index} is out of range: this model has {count} {what}(s), "
            f"numbered 0 to {count - 1}",
            fix=f"pick --{option} from 0 to {count - 1}, or leave it out to draw them all",
        )
    return [index]


def _attention_figure(
    alignment: Alignment, weights: np.ndarray, layers: list[int], heads: list[int], titled: bool
) -> Figure:
    _, _, T, S = weights.shape
    rows, cols = len(layers), len(heads)
    # Square cells of CELL inches, plus room for the token labels, the titles and the colorbar.
    # Past MAX_FIGURE the cells shrink (staying square), and their labels with them.
    extra_w = 2.0 + 0.07 * _longest(alignment.target)
    extra_h = 1.2 + 0.07 * _longest(alignment.source) + 0.3 * rows * titled
    panel_w, panel_h = max(S * CELL, 1.5), max(T * CELL, 1.5)
    scale = min(1.0, (MAX_FIGURE - extra_w) / (cols * panel_w), (MAX_FIGURE - extra_h) / (rows * panel_h))
    width, height = cols * panel_w * scale + extra_w, rows * panel_h * scale + extra_h
    cell_pt = 72 * scale * min(panel_w / S, panel_h / T)
    fontsize = float(np.clip(0.6 * cell_pt, 5, 10))
    if cell_pt < 6:
        log.info("%d×%d maps of %d×%d tokens are small: --layer/--head draw one larger", rows, cols, T, S)
    step = math.ceil(6 / cell_pt) if cell_pt < 6 else 1  # too small to label all: every step-th

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    chosen = weights[np.ix_(layers, heads)]  # (rows, cols, T, S)
    vmax = max(float(chosen.max()), 1e-6)  # one colour scale for all panels, so they compare
    for r, l in enumerate(layers):
        for c, h in enumerate(heads):
            ax = axes[r, c]
            image = ax.imshow(weights[l, h], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
            if titled:
                ax.set_title(f"layer {l}, head {h}", fontsize=10)
            # Tokens along the outer edges only: the panels line up, and ticks are slow to draw.
            if r == rows - 1:
                _token_ticks(ax.xaxis, alignment.source, fontsize, step, rotation=60)
                ax.set_xlabel("source")
            else:
                ax.set_xticks([])
            if c == 0:
                _token_ticks(ax.yaxis, alignment.target, fontsize, step)
                ax.set_ylabel("target")
            else:
                ax.set_yticks([])
    colorbar = fig.colorbar(image, ax=axes, pad=0.02)
    colorbar.set_label("attention weight")
    title = f"→ {alignment.translation.text}  (score {alignment.translation.score:.2f})"
    wrap = max(30, int(width * 72 / 8))  # about the characters of 11 pt text across the figure
    title = textwrap.fill(textwrap.shorten(title, 3 * wrap, placeholder=" …"), wrap)
    fig.suptitle(_escape(title), fontsize=11)
    return fig


def _token_ticks(axis, tokens: list[str], fontsize: float, step: int, rotation: float = 0) -> None:
    at = range(0, len(tokens), step)
    style = {"rotation": rotation, "ha": "right", "rotation_mode": "anchor"} if rotation else {}
    axis.set_ticks(list(at), [_label(tokens[i]) for i in at], fontsize=fontsize, **style)
    axis.set_tick_params(length=2, pad=2)


def _label(token: str, limit: int = 14) -> str:
    token = token if len(token) <= limit else token[: limit - 1] + "…"
    return _escape(token)


def _longest(tokens: list[str]) -> int:
    return min(14, max((len(t) for t in tokens), default=1))


# ---------------------------------------------------------------- shared


def _escape(text: str) -> str:
    """matplotlib reads $...$ as mathematics; tokens are plain text."""
    return text.replace("$", r"\$")


def _format(out: Path) -> str:
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise DragomanError(
            f"cannot tell the image format from the suffix {out.suffix!r}"
            if out.suffix
            else "cannot tell the image format: the file name has no suffix",
            file=out,
            fix="name the output .png or .svg",
        )
    return fmt


def _save(fig: Figure, out: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    # No date or version in the file: the same log draws the same bytes.
    metadata = {"Date": None, "Creator": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "dragoman"}):  # SVG ids from a fixed salt, not random
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    atomic_write_bytes(out, buffer.getvalue())
