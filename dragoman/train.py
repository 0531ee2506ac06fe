"""`dragoman train`: THE loop, top to bottom.

    batch → forward → loss → backward → clip → step → log → validate → checkpoint

A run is described by its `Progress` (step, epoch, position in the epoch, early-stopping state),
saved with every checkpoint together with the model, optimizer, scheduler and RNG state, so
`--resume` continues exactly where the last checkpoint left off: the batch order of every epoch is
a function of (seed, epoch), and nothing else carries state between steps.

Under torchrun the same loop runs in every process, each on its share of every epoch's batches;
`dragoman/distributed.py` holds what differs: averaged gradients, rank 0's files and decisions.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from dragoman import distributed
from dragoman.checkpoint import last_checkpoint, load_trainer, load_weights, write_checkpoint, write_weights
from dragoman.config import METRICS, Config, dump_config
from dragoman.data.batches import Batch, Batches
from dragoman.data.prepare import load_batches, load_tokenizers, prepare
from dragoman.data.text import read_lines
from dragoman.data.tokenizers import PAD
from dragoman.errors import DragomanError
from dragoman.io import atomic_write_text
from dragoman.metrics import classification_scores, corpus_scores
from dragoman.models import build_model
from dragoman.models.vectors import load_vectors
from dragoman.optim import build_optimizer, build_scheduler
from dragoman.translator import Translator

log = logging.getLogger("dragoman")
HIGHER_IS_BETTER = METRICS


@dataclass
class Progress:
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch: int = 0  # next batch within the epoch
    best: float | None = None  # best value of the early-stopping metric
    bad_validations: int = 0
    stopped_early: bool = False
    seconds: float = 0.0  # training time, summed over resumes


def token_loss(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """Summed label-smoothed cross-entropy (Szegedy et al., 2016) over non-pad target tokens."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        target.reshape(-1),
        ignore_index=PAD,
        label_smoothing=smoothing,
        reduction="sum",
    )


def predict(model: nn.Module, batch: Batch) -> Tensor:
    """A model's logits for a batch of its task: (B, T, V) per target token, or (B, C) per text."""
    if batch.tgt_in is None:  # encoder-only classifier
        return model(batch.src)
    if batch.src is None:  # decoder-only language model
        return model(batch.tgt_in)
    return model(batch.src, batch.tgt_in)


def batch_loss(logits: Tensor, batch: Batch, smoothing: float) -> Tensor:
    """Summed loss over the batch's `tgt_tokens` predictions (class ids have no padding)."""
    if batch.tgt_in is None:
        return F.cross_entropy(logits.float(), batch.tgt_out, label_smoothing=smoothing, reduction="sum")
    return token_loss(logits, batch.tgt_out, smoothing)


class MetricsLog:
    """metrics.jsonl (one JSON object per line) and, when installed, TensorBoard."""

    def __init__(self, model_dir: Path, resume_step: int | None) -> None:
        self.path = model_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():  # forget what came after the checkpoint
            rows = [r for r in self.path.read_text().splitlines() if self._before(r, resume_step)]
            atomic_write_text(self.path, "".join(r + "\n" for r in rows))
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(model_dir / "tensorboard"))
        except ImportError:
            self.board = None

    @staticmethod
    def _before(row: str, step: int) -> bool:
        """Whether a log line belongs before `step`; a line cut short by a killed run does not."""
        try:
            return json.loads(row)["step"] <= step
        except (ValueError, KeyError, TypeError):
            return False

    def write(self, kind: str, step: int, **values: float) -> None:
        self.file.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        self.file.flush()
        if self.board is not None:
            for name, value in values.items():
                self.board.add_scalar(f"{kind}/{name}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _finished(progress: Progress, config: Config) -> bool:
    cfg = config.train
    return (
        progress.stopped_early
        or (cfg.max_steps is not None and progress.step >= cfg.max_steps)
        or (cfg.max_epochs is not None and progress.epoch >= cfg.max_epochs)
        or (cfg.max_minutes is not None and progress.seconds >= 60 * cfg.max_minutes)
    )


def autocast(config: Config, device: torch.device) -> torch.autocast:
    """bf16 mixed precision when `train.precision` asks for it (a no-op context otherwise)."""
    bf16 = config.train.precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[Batch], config: Config
) -> Tensor:
    """One optimizer step over `batches` (gradient accumulation); returns the loss per token, as a
    tensor on the model's device: on a GPU, reading it waits for the step to finish, so the loop
    reads it only when it logs, and queues the next steps meanwhile.

    Under torchrun each rank divides its summed loss by the mean token count of the ranks: DDP then
    averages the gradients, so the step is the gradient of the loss summed over every rank's tokens
    divided by their total, as in one process taking all the ranks' batches at once. The loss
    returned is this rank's share; its mean over the ranks is the loss per token."""
    tokens = distributed.mean(sum(b.tgt_tokens for b in batches))
    total = torch.zeros((), device=batches[0].tgt_out.device)
    for i, batch in enumerate(batches):
        with distributed.syncing(model, last=i == len(batches) - 1):
            with autocast(config, batch.tgt_out.device):
                loss = batch_loss(predict(model, batch), batch, config.train.label_smoothing) / tokens
            loss.backward()
        total += loss.detach()
    if config.train.l1 > 0:  # Σ|w| over weight matrices (not biases, norms or frozen vectors)
        weights = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
        (config.train.l1 * torch.stack([w.abs().sum() for w in weights]).sum()).backward()
    if config.train.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_grad_norm, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


@torch.no_grad()
def validate(
    model: nn.Module,
    translator: Translator | None,
    dev: Batches,
    texts: tuple[list[str], list[str]] | None,
    device: torch.device,
    beam: int = 1,
) -> dict[str, float]:
    """Dev loss (no smoothing) and, by task: perplexity and BLEU/chrF of the decoded dev sources
    (seq2seq), perplexity (lm), accuracy and macro-F1 (classify)."""
    model.eval()
    nll, count = 0.0, 0
    gold, predicted = [], []
    for indices in dev.epoch(0, shuffle=False):
        batch = dev.collate(indices).to(device)
        logits = predict(model, batch)
        nll += batch_loss(logits, batch, 0.0).item()
        count += batch.tgt_tokens
        if batch.tgt_in is None:
            gold += batch.tgt_out.tolist()
            predicted += logits.argmax(-1).tolist()
    loss = nll / max(count, 1)
    scores = {"loss": loss}
    if gold:
        scores |= classification_scores(gold, predicted, logits.size(-1))
    else:
        scores["ppl"] = math.exp(min(loss, 50.0))
    if translator is not None:
        hypotheses = translator.translate(texts[0], beam=beam, n_best=1)
        scores |= corpus_scores(hypotheses, texts[1])
    model.train()
    return scores


def _dev_texts(config: Config) -> tuple[list[str], list[str]]:
    src, tgt = (read_lines(p) for p in config.data.files("dev"))
    keep = [i for i in range(len(src)) if src[i].strip() and tgt[i].strip()][: config.train.dev_sentences]
    return [src[i] for i in keep], [tgt[i] for i in keep]


def _improved(value: float, progress: Progress, metric: str) -> bool:
    if progress.best is None:
        return True
    return value > progress.best if HIGHER_IS_BETTER[metric] else value < progress.best


def _pretrained_embeddings(model: nn.Module, config: Config, tokenizers, fresh: bool) -> None:
    """Copy word vectors into the embeddings of a fresh model; keep frozen ones frozen on resume."""
    for side, tok in zip(("src", "tgt"), tokenizers):
        spec, embed = getattr(config.model, f"{side}_vectors"), getattr(model, f"{side}_embed", None)
        if spec is None:
            continue
        if embed is None:
            raise DragomanError(
                f"model.{side}_vectors: a {config.task} model has no {side} embedding",
                fix=f"remove model.{side}_vectors",
            )
        if fresh:
            load_vectors(embed, tok.pieces(range(tok.vocab_size)), spec, f"model.{side}_vectors")
        elif spec.freeze:
            embed.weight.requires_grad_(False)


@dataclass
class Run:
    """Everything one training run holds; `start` builds it, fresh or from the last checkpoint."""

    config: Config
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    progress: Progress
    metrics: MetricsLog | None  # rank 0's alone under torchrun
    translator: Translator | None  # seq2seq: decodes the dev set for BLEU
    device: torch.device

    @classmethod
    def start(cls, config: Config, resume: bool) -> Run:
        cfg = config.train
        model_dir = Path(cfg.model_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        device = distributed.start(_device(cfg.device))  # under torchrun: join the other ranks
        distributed.main_first(lambda: prepare(config))  # the others wait, then read what it wrote
        if distributed.is_main():
            atomic_write_text(model_dir / "config.yaml", dump_config(config))
        src_tok, tgt_tok = load_tokenizers(model_dir, config)
        model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size, config.task).to(device)
        _pretrained_embeddings(model, config, (src_tok, tgt_tok), fresh=not resume)
        saved = last_checkpoint(model_dir) if resume else None
        if saved:  # into the whole model, before FSDP cuts it into shards
            load_weights(model, saved / "model.safetensors")
        if cfg.compile:  # torch.compile the forward pass: slow first steps (per shape), faster later
            # one graph under DDP too: Dynamo's split of it at DDP's buckets failed on a GPU (torch
            # 2.11); DDP then all-reduces the gradients after the backward pass, not during it
            torch._dynamo.config.optimize_ddp = False
            model.compile(dynamic=True)
        model = distributed.wrap(model, cfg.distributed, device)  # under torchrun: DDP or FSDP
        optimizer = build_optimizer(model.parameters(), cfg.optimizer)
        mode = "max" if HIGHER_IS_BETTER[cfg.early_stopping.metric] else "min"
        scheduler = build_scheduler(optimizer, cfg.schedule, cfg.max_steps, mode)
        progress = Progress()
        if saved:
            progress = Progress(**load_trainer(saved, optimizer, scheduler))
            log.info(
                "resumed from step %d (epoch %d, batch %d)", progress.step, progress.epoch, progress.batch
            )
        distributed.fit_optimizer(optimizer)  # FSDP: to its shards
        metrics = MetricsLog(model_dir, progress.step if resume else None) if distributed.is_main() else None
        plain = distributed.unwrap(model)  # without DDP's wrapper: decoding syncs no gradients
        translator = Translator(plain, config, src_tok, tgt_tok) if config.task == "seq2seq" else None
        return cls(config, model, optimizer, scheduler, progress, metrics, translator, device)

    @property
    def model_dir(self) -> Path:
        return Path(self.config.train.model_dir)

    @property
    def plateau(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def checkpoint(self) -> None:
        # every rank takes part (FSDP gathers the shards of each tensor); rank 0 writes
        weights, optimizer = distributed.weights(self.model), distributed.optimizer_state(self.optimizer)
        if distributed.is_main():
            write_checkpoint(
                self.model_dir,
                weights,
                optimizer,
                self.scheduler.state_dict(),
                asdict(self.progress),
                self.config.train.keep_last,
            )

    def keep_weights(self) -> None:
        """The current weights as the model's best, model.safetensors (every rank takes part)."""
        weights = distributed.weights(self.model)
        if distributed.is_main():
            write_weights(weights, self.model_dir / "model.safetensors")


def validate_and_keep_best(run: Run, dev: Batches | None, dev_texts) -> str:
    """Score the dev set, keep the best weights, count validations without improvement."""
    cfg, progress = run.config.train, run.progress
    if dev is None:  # nothing to choose by: the newest weights are the best
        run.keep_weights()
        return f"step {progress.step}: no dev set, weights saved"
    metric = cfg.early_stopping.metric
    with distributed.whole(run.model) as model:  # every rank validates (FSDP needs them all)
        scores = validate(model, run.translator, dev, dev_texts, run.device, cfg.dev_beam)
    scores = distributed.agree(scores)  # rank 0's: every rank takes the same decisions below
    if run.metrics:
        run.metrics.write("valid", progress.step, **scores)
    if run.plateau:
        run.scheduler.step(scores[metric])
    if _improved(scores[metric], progress, metric):
        progress.best, progress.bad_validations = scores[metric], 0
        run.keep_weights()
    else:
        progress.bad_validations += 1
        patience = cfg.early_stopping.patience
        progress.stopped_early = patience is not None and progress.bad_validations >= patience
    return f"step {progress.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())


def train(config: Config, resume: bool = False) -> Path:
    """Train the model a config describes; returns its model directory."""
    cfg = config.train
    run = Run.start(config, resume)
    progress = run.progress
    data = load_batches(config, "train", cfg.batch_tokens)
    dev = load_batches(config, "dev", config.decode.batch_tokens) if config.data.dev else None
    dev_texts = _dev_texts(config) if dev and config.task == "seq2seq" else None
    n_params = sum(p.numel() for p in run.model.parameters()) / 1e6
    name = {"seq2seq": config.model.name, "classify": f"{config.model.encoder} classifier"}.get(
        config.task, "transformer language model"
    )
    examples = {"seq2seq": "pairs", "classify": "labelled texts"}.get(config.task, "sequences")
    log.info("%s: %.2fM parameters, %d training %s, %s", name, n_params, len(data), examples, run.device)

    run.model.train()
    epoch = distributed.shard(data.epoch(progress.epoch))  # under torchrun, this rank's batches
    bar = tqdm(
        total=cfg.max_steps,
        initial=progress.step,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=not distributed.is_main(),
    )
    window_tokens, window_start = 0, time.perf_counter()
    while not _finished(progress, config):
        if progress.batch >= len(epoch):  # next epoch, in a new seeded order
            progress.epoch, progress.batch = progress.epoch + 1, 0
            epoch = distributed.shard(data.epoch(progress.epoch))
            continue
        started = time.perf_counter()
        group = [
            data.collate(i).to(run.device) for i in epoch[progress.batch : progress.batch + cfg.accumulate]
        ]
        progress.batch += len(group)
        loss = train_step(run.model, run.optimizer, group, config)
        if not run.plateau:
            run.scheduler.step()
        progress.step += 1
        # the slowest rank's time, so that train.max_minutes ends every rank after the same step
        progress.seconds += distributed.most(time.perf_counter() - started)
        window_tokens += sum(b.src_tokens + b.tgt_tokens for b in group)

        if progress.step % cfg.log_every == 0:
            loss = distributed.mean(loss.item())  # per token of all the ranks' batches
            lr = run.optimizer.param_groups[0]["lr"]
            speed = distributed.total(window_tokens) / (time.perf_counter() - window_start)
            window_tokens, window_start = 0, time.perf_counter()
            if run.metrics:
                run.metrics.write(
                    "train", progress.step, loss=loss, lr=lr, tokens_per_s=speed, epoch=progress.epoch
                )
            eta = {}
            if cfg.max_minutes is not None:  # tqdm's own ETA needs max_steps
                eta["left"] = f"{max(0.0, cfg.max_minutes - progress.seconds / 60):.1f}min"
            bar.set_postfix(
                loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:.0f}", epoch=progress.epoch, **eta
            )
        bar.update(1)

        if progress.step % cfg.validate_every == 0 or _finished(progress, config):
            line = validate_and_keep_best(run, dev, dev_texts)
            if distributed.is_main():
                bar.write(line)
            run.checkpoint()
    bar.close()
    if run.metrics:
        run.metrics.close()
    if progress.stopped_early:
        log.info(
            "early stopping: no %s improvement in %d validations",
            cfg.early_stopping.metric,
            progress.bad_validations,
        )
    model_dir = run.model_dir
    del run  # DDP holds the process group: it must go first (see distributed.stop)
    distributed.stop()
    return model_dir
