"""Text in, text out: tokenization, batching by tokens, search, detokenization.

from dragoman import Translator
translator = Translator.load("runs/quickstart/model")
print(translator.translate(["1234", "56"]))

A decoder-only language model (task: lm) is driven the same way, with prompts in place of sources:
its output is the prompt continued (the whole text, as Hugging Face's text generation returns it).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from dragoman import search
from dragoman.checkpoint import last_checkpoint, load_weights
from dragoman.config import Config, DecodeConfig, load_config
from dragoman.data.batches import pad
from dragoman.data.prepare import load_tokenizers
from dragoman.data.tokenizers import BOS, EOS, PAD, SPECIALS, Tokenizer
from dragoman.errors import DragomanError
from dragoman.models import build_model

log = logging.getLogger("dragoman")


@dataclass
class Translation:
    text: str
    score: float


@dataclass
class Alignment:
    """One translation with its tokens and the attention of each output token over the input.

    `weights` is (layers, heads, T, S): the Transformer's cross-attention per decoder layer and
    head, or (1, 1, T, S) for an RNN decoder's attention; None for a model without attention.
    `target` ends with "</s>", whose row is the attention while predicting the end.
    """

    translation: Translation
    source: list[str]
    target: list[str]
    weights: np.ndarray | None


def truncate(ids: list[list[int]], max_len: int) -> list[list[int]]:
    """Inputs cut to `max_len` tokens, with a warning that counts the ones that were longer."""
    long = [i for i, seq in enumerate(ids) if len(seq) > max_len]
    if long:
        log.warning(
            "%d input(s) longer than %d tokens were truncated (first: line %d)",
            len(long),
            max_len,
            long[0] + 1,
        )
    return [seq[:max_len] for seq in ids]


def override(decode: DecodeConfig, **options) -> DecodeConfig:
    """`decode` with `options` overriding it, checked like the config file."""
    try:
        return DecodeConfig.model_validate({**decode.model_dump(), **options})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        raise DragomanError(f"invalid decoding option: {where + ': ' if where else ''}{message}") from None


PRECISIONS = ("fp32", "bf16", "int8")


def lower_precision(model: nn.Module, precision: str) -> nn.Module:
    """A model for inference in `precision`: fp32 as it is; bf16 with every weight in bfloat16
    (fast on CPUs with avx512_bf16 or AMX, and on GPUs); int8 with every nn.Linear dynamically
    quantized (int8 weights, activations quantized per batch; CPU only)."""
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao, but works
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    return model


def load_model(
    model_dir: str | Path, checkpoint: str = "best", device: str = "cpu", precision: str = "fp32"
) -> tuple[nn.Module, Config, Tokenizer, Tokenizer]:
    """The model of a model directory with its config and tokenizers, in eval mode."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DragomanError(
            "model directory not found",
            file=model_dir,
            fix="train one with `dragoman train CONFIG`",
        )
    config = load_config(model_dir / "config.yaml")
    src_tok, tgt_tok = load_tokenizers(model_dir, config)
    model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size, config.task)
    weights = model_dir / "model.safetensors"
    if checkpoint == "last" or not weights.exists():
        weights = last_checkpoint(model_dir) / "model.safetensors"
    load_weights(model, weights)
    if precision == "int8" and device != "cpu":
        raise DragomanError("int8 (dynamic quantization) runs on the CPU", fix="use --precision bf16 on a GPU")
    return lower_precision(model.to(device).eval(), precision), config, src_tok, tgt_tok


class Translator:
    """Translates lists of strings with an encoder-decoder, or continues prompts with a language model."""

    def __init__(self, model: nn.Module, config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
        if config.task == "classify":
            raise DragomanError(
                "this is a classifier (task: classify): it gives labels, not text",
                fix="use `dragoman classify MODEL_DIR` (dragoman.classify.TextClassifier)",
            )
        self.model, self.config = model, config
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.device = next(model.parameters()).device
        self.lm = config.task == "lm"

    @classmethod
    def load(
        cls, model_dir: str | Path, checkpoint: str = "best", device: str = "cpu", precision: str = "fp32"
    ) -> Translator:
        return cls(*load_model(model_dir, checkpoint, device, precision))

    def translate(self, texts: list[str], **options) -> list[str]:
        """One translation per text; `options` override the config's decode section."""
        return [nbest[0].text for nbest in self.translate_nbest(texts, **options)]

    def translate_nbest(self, texts: list[str], **options) -> list[list[Translation]]:
        decode = self.decode_config(**options)
        ids = self._encode(texts)
        results: list[list[Translation]] = [[Translation("", 0.0)] for _ in texts]
        generator = self._generator(decode)
        for batch in self.batches(ids, decode.batch_tokens, keep_empty=self.lm, equal_length=self.lm):
            hyps = self._search([ids[i] for i in batch], decode, generator)
            for i, tokens, scores in zip(batch, hyps.tokens, hyps.scores):
                prompt = ids[i] if self.lm else []
                results[i] = [Translation(self.tgt_tok.decode(prompt + t), s) for t, s in zip(tokens, scores)]
        return results

    @torch.inference_mode()
    def align(self, text: str, target: str | None = None, **options) -> Alignment:
        """Translate one text (its best output) and record the attention that produced it; or, given
        `target`, the attention (and log-probability) of the model reading that output."""
        decode = self.decode_config(**options)
        if self.lm:
            raise DragomanError("a language model has no attention over a source to show")
        ids = self._encode([text])[0]
        if not ids:
            return Alignment(Translation("", 0.0), [], [], None)
        src = torch.tensor([ids], device=self.device)
        if target is None:
            hyps = self._search([ids], decode, self._generator(decode))
            out, score = hyps.tokens[0][0], hyps.scores[0][0]
        else:
            out = self.tgt_tok.encode(target)[: self.model.max_positions - 2]
            logits = self.model(src, torch.tensor([[BOS, *out]], device=self.device))  # (1, T, V)
            logp = logits[0].float().log_softmax(-1).gather(-1, torch.tensor([[*out, EOS]]).T.to(self.device))
            score = logp.sum().item()
        tgt_in = torch.tensor([[BOS, *out]], device=self.device)
        try:
            weights = self.model.attention_weights(src, tgt_in)[:, 0].float().cpu().numpy()
        except ValueError:  # a model without attention
            weights = None
        return Alignment(
            Translation(self.tgt_tok.decode(out), score),
            self.src_tok.pieces(ids),
            [*self.tgt_tok.pieces(out), SPECIALS[EOS]],
            weights,
        )

    @torch.inference_mode()
    def perplexity(self, texts: list[str], batch_tokens: int | None = None) -> tuple[float, int]:
        """A language model's perplexity on `texts`, each read as <s> text </s> (empty lines skipped,
        long ones truncated to fit max_positions), and the number of tokens it predicted."""
        if not self.lm:
            raise DragomanError("perplexity of texts is measured for a language model (task: lm)")
        ids = truncate(self.src_tok.encode_batch(texts), self.model.max_positions - 1)
        nll, count = 0.0, 0
        for batch in self.batches(ids, batch_tokens or self.config.decode.batch_tokens):
            seqs = [np.asarray(ids[i]) for i in batch]
            tgt_in, tgt_out = pad(seqs, prefix=BOS).to(self.device), pad(seqs, suffix=EOS).to(self.device)
            logp = self.model(tgt_in).float().log_softmax(-1).gather(-1, tgt_out[..., None])[..., 0]
            real = tgt_out != PAD
            nll -= float(logp[real].sum())
            count += int(real.sum())
        return math.exp(nll / max(count, 1)), count

    def decode_config(self, **options) -> DecodeConfig:
        """The config's decode section with `options` overriding it, checked like the config file."""
        return override(self.config.decode, **options)

    def _generator(self, decode: DecodeConfig) -> torch.Generator | None:
        if decode.sampling and decode.seed is not None:
            return torch.Generator(device=self.device).manual_seed(decode.seed)
        return None

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return truncate(self.src_tok.encode_batch(texts), self.config.data.max_len)

    @staticmethod
    def batches(
        ids: list[list[int]], batch_tokens: int, keep_empty: bool = False, equal_length: bool = False
    ) -> list[list[int]]:
        """Indices of the non-empty inputs (or all), sorted by length and cut into batches of
        ≤ batch_tokens (or also wherever the length changes: a language model's prompts)."""
        order = sorted((i for i, seq in enumerate(ids) if seq or keep_empty), key=lambda i: len(ids[i]))
        batches, current = [], []
        for i in order:
            full = (len(current) + 1) * len(ids[i]) > batch_tokens
            if current and (full or (equal_length and len(ids[i]) != len(ids[current[0]]))):
                batches.append(current)
                current = []
            current.append(i)
        return batches + ([current] if current else [])

    @torch.inference_mode()
    def _search(self, ids: list[list[int]], decode: DecodeConfig, generator) -> search.Hypotheses:
        src = pad([np.asarray(seq) for seq in ids], prefix=BOS if self.lm else None).to(self.device)
        lengths = torch.tensor([len(seq) for seq in ids], device=self.device)
        limit = self.model.max_positions - 1 - (src.size(1) if self.lm else 0)
        max_len = (lengths * decode.max_len_a + decode.max_len_b).long().clamp(max=limit)
        if self.lm:  # the prompt is the memory: the search starts from its last token
            state, start = self.model.prefill(src)
        else:
            state, start = self.model.init_state(self.model.encode(src)), None
        if decode.sampling:
            return search.sample(
                self.model,
                state,
                max_len,
                decode.temperature,
                decode.top_k,
                decode.top_p,
                generator,
                start,
            )
        if decode.beam == 1:
            return search.greedy(self.model, state, max_len, start)
        return search.beam_search(
            self.model, state, max_len, decode.beam, decode.n_best, decode.length_penalty, start
        )
