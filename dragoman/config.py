"""Every option in one place: pydantic models that refuse unknown keys and impossible values.

A config is YAML with four sections, `data`, `model`, `train` and `decode` (see configs/).
`load_config` turns every validation problem into one DragomanError that names the YAML path
(e.g. `model.heads`) and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dragoman.errors import DragomanError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TokenizerConfig(Section):
    kind: Literal["bpe", "unigram", "word", "char"] = "bpe"
    vocab_size: int = Field(8000, ge=8, description="including the 4 special tokens")
    min_freq: int = Field(1, ge=1, description="word/char: rarer tokens become <unk>")
    sample_size: int = Field(1_000_000, ge=100, description="sentences the tokenizer is learned from")


class DataConfig(Section):
    """Where the text is. seq2seq: {train}.{src} → {train}.{tgt}. classify: {train}.{src} texts with
    {train}.{tgt} labels, one per line, or (format: csv) train/dev/test are CSV files with a header.
    lm: {train}.{src} only, one document per line, or cut into blocks of block_size tokens."""

    src: str | None = Field(None, description="source (text) file suffix, e.g. 'en' for train.en")
    tgt: str | None = Field(None, description="target suffix, e.g. 'de'; classify: the labels' suffix")
    train: str = Field(description="path prefix of the training files: {train}.{src}, {train}.{tgt}")
    dev: str | None = None
    test: str | None = None
    format: Literal["text", "csv"] = Field("text", description="classify: csv = train/dev/test are CSV files")
    text_column: str = Field("text", description="format: csv")
    label_column: str = Field("label", description="format: csv")
    block_size: int | None = Field(
        None, ge=2, description="lm: join the documents and cut them into blocks of this many tokens"
    )
    max_len: int = Field(128, ge=1, description="tokens; see too_long; inputs at translation are truncated")
    too_long: Literal["drop", "truncate"] = Field(
        "drop", description="training examples longer than max_len: dropped, or truncated (counted)"
    )
    joint_vocab: bool = Field(True, description="one tokenizer for both sides")
    tokenizer: TokenizerConfig = TokenizerConfig()
    tgt_tokenizer: TokenizerConfig | None = Field(None, description="a different target tokenizer")

    @model_validator(mode="after")
    def _joint_means_one_tokenizer(self) -> DataConfig:
        if self.joint_vocab and self.tgt_tokenizer is not None:
            raise ValueError("data.tgt_tokenizer needs data.joint_vocab: false")
        return self

    def files(self, split: str) -> tuple[Path, ...] | None:
        """The files of a split: (source, target), (texts, labels), (CSV,) or (texts,) for lm."""
        prefix = getattr(self, split)
        if prefix is None:
            return None
        if self.format == "csv":
            return (Path(prefix),)
        suffixes = [self.src] if self.tgt is None else [self.src, self.tgt]
        return tuple(Path(f"{prefix}.{suffix}") for suffix in suffixes)


class VectorsConfig(Section):
    """Pretrained word vectors to initialise an embedding with (read by gensim's KeyedVectors)."""

    path: str
    format: Literal["word2vec", "word2vec_binary", "glove"] = "word2vec"
    freeze: bool = Field(False, description="keep the vectors fixed during training")


ENCODERS = ("transformer", "rnn", "gru", "lstm", "cnn")
DECODERS = ("transformer", "rnn", "gru", "lstm")
RECURRENT = ("rnn", "gru", "lstm")


class ModelConfig(Section):
    encoder: Literal["transformer", "rnn", "gru", "lstm", "cnn"] = "transformer"
    decoder: Literal["transformer", "rnn", "gru", "lstm"] = "transformer"
    d_model: int = Field(256, ge=8, description="embedding width; the Transformer's model width")
    heads: int = Field(4, ge=1, description="transformer")
    ff: int = Field(1024, ge=1, description="transformer: feed-forward hidden size")
    enc_layers: int = Field(3, ge=1)
    dec_layers: int = Field(3, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="on embeddings, between layers, on outputs")
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="transformer")
    norm: Literal["pre", "post"] = "pre"
    positions: Literal["sinusoidal", "learned"] = Field(
        "sinusoidal", description="transformer; the cnn encoder always learns its positions (Gehring et al.)"
    )
    max_positions: int = Field(1024, ge=8)
    share_embeddings: bool | None = Field(
        None, description="source/target; default: when the vocabulary is joint"
    )
    tie_output: bool | None = Field(
        None, description="output layer shares the target embedding; default: when the sizes allow"
    )
    # Recurrent and convolutional models.
    hidden: int = Field(256, ge=1, description="rnn/gru/lstm encoder: per direction; cnn: channels")
    bidirectional: bool = Field(True, description="rnn/gru/lstm encoder")
    kernel_size: int = Field(3, ge=1, description="cnn encoder, odd")
    dec_hidden: int | None = Field(None, ge=1, description="rnn decoder; default: the encoder's output size")
    attention: Literal["none", "bahdanau", "luong_dot", "luong_general"] = Field(
        "bahdanau", description="rnn decoder; none = the fixed-vector model of Sutskever et al."
    )
    input_feeding: bool = Field(False, description="rnn decoder: feed the last attentional vector back in")
    bridge: Literal["project", "copy", "zeros"] = Field(
        "project", description="encoder's final state → decoder's initial state"
    )
    reverse_source: bool = Field(False, description="rnn encoder reads the source backwards (Sutskever)")
    scheduled_sampling: float = Field(
        0.0, ge=0.0, le=1.0, description="rnn decoder: chance of feeding its own prediction in training"
    )
    src_vectors: VectorsConfig | None = None
    tgt_vectors: VectorsConfig | None = None
    # Encoder-only models (task: classify) and sentence embeddings.
    pooling: Literal["mean", "first"] = Field(
        "mean", description="classify/embed: mean of the encoder states, or the first token's"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_arch(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("arch") == "transformer":  # issue-2 configs
            raw = {k: v for k, v in raw.items() if k != "arch"}
        return raw

    @property
    def name(self) -> str:
        if self.encoder == self.decoder == "transformer":
            return "transformer"
        attention = "" if self.attention == "none" else f"+{self.attention}"
        return f"{self.encoder}-{self.decoder}{attention}"

    @property
    def enc_out(self) -> int:
        """Width of the encoder's memory."""
        if self.encoder in RECURRENT:
            return self.hidden * (2 if self.bidirectional else 1)
        return self.hidden if self.encoder == "cnn" else self.d_model

    @model_validator(mode="after")
    def _parts_fit(self) -> ModelConfig:
        pair = f"model.encoder: {self.encoder} with model.decoder: {self.decoder}"
        if self.decoder == "transformer":
            if self.encoder != "transformer":
                raise ValueError(
                    f"{pair} is not supported: the transformer decoder reads a transformer encoder's "
                    "memory; use encoder: transformer, or an rnn/gru/lstm decoder"
                )
            if self.scheduled_sampling:
                raise ValueError("model.scheduled_sampling needs an rnn/gru/lstm decoder")
        if "transformer" in (self.encoder, self.decoder):
            if self.d_model % self.heads:
                raise ValueError(f"model.heads ({self.heads}) must divide model.d_model ({self.d_model})")
            if self.d_model % 2:
                raise ValueError(f"model.d_model must be even, got {self.d_model}")
        if self.encoder == "cnn" and self.kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size must be odd, got {self.kernel_size}")
        if self.reverse_source and self.encoder not in RECURRENT:
            raise ValueError(
                f"model.reverse_source with model.encoder: {self.encoder}: needs an rnn/gru/lstm encoder"
            )
        if self.decoder in RECURRENT:
            self._recurrent_decoder_fits(pair)
        return self

    def _recurrent_decoder_fits(self, pair: str) -> None:
        if self.dec_hidden is None:
            self.dec_hidden = self.enc_out
        if self.attention == "none" and self.bridge == "zeros":
            raise ValueError(
                "model.attention: none with model.bridge: zeros leaves the decoder blind to the source; "
                "use bridge: project or copy"
            )
        if self.attention == "none" and self.input_feeding:
            raise ValueError(
                "model.input_feeding with model.attention: none: input feeding needs attention "
                "(bahdanau, luong_dot or luong_general)"
            )
        out_dim = self.dec_hidden if self.attention == "none" else self.d_model
        if self.tie_output and out_dim != self.d_model:
            raise ValueError(
                f"model.tie_output needs the decoder's output width (model.dec_hidden {self.dec_hidden}, "
                f"with model.attention: none) equal to model.d_model ({self.d_model}); "
                "set tie_output: false or change the sizes"
            )
        if self.attention == "luong_dot" and self.dec_hidden != self.enc_out:
            raise ValueError(
                f"model.attention: luong_dot needs model.dec_hidden ({self.dec_hidden}) equal to the "
                f"encoder's output size ({self.enc_out}); use luong_general, or change the sizes"
            )
        if self.bridge == "copy":
            if self.encoder not in RECURRENT or (self.encoder == "lstm") != (self.decoder == "lstm"):
                raise ValueError(
                    f"model.bridge: copy with {pair}: copying a final state needs two rnn/gru "
                    "or two lstm sides; use bridge: project"
                )
            if self.enc_layers != self.dec_layers or self.enc_out != self.dec_hidden:
                raise ValueError(
                    f"model.bridge: copy needs equal model.enc_layers and model.dec_layers "
                    f"({self.enc_layers} vs {self.dec_layers}) and "
                    f"encoder output size = model.dec_hidden ({self.enc_out} vs {self.dec_hidden}); "
                    "use bridge: project"
                )


class OptimizerConfig(Section):
    name: Literal["adam", "adamw", "sgd", "rmsprop", "adagrad"] = "adam"
    lr: float = Field(5e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-9, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0, description="L2 (decoupled for adamw)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="sgd, rmsprop")
    nesterov: bool = False


class ScheduleConfig(Section):
    name: Literal["constant", "inverse_sqrt", "cosine", "plateau"] = "inverse_sqrt"
    warmup: int = Field(4000, ge=0, description="steps of linear warm-up (inverse_sqrt, cosine)")
    min_lr: float = Field(0.0, ge=0.0, description="cosine floor, plateau floor")
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="plateau: lr *= factor")
    patience: int = Field(2, ge=0, description="plateau: validations without improvement")


METRICS = {  # early-stopping metric → whether higher is better
    "bleu": True,
    "chrf": True,
    "loss": False,
    "ppl": False,
    "accuracy": True,
    "f1": True,
}
TASK_METRICS = {
    "seq2seq": ("bleu", "chrf", "loss", "ppl"),
    "classify": ("accuracy", "f1", "loss"),
    "lm": ("ppl", "loss"),
}


class EarlyStoppingConfig(Section):
    metric: Literal["bleu", "chrf", "loss", "ppl", "accuracy", "f1"] | None = Field(
        None, description="default: bleu (seq2seq), accuracy (classify), ppl (lm)"
    )
    patience: int | None = Field(None, ge=1, description="validations without improvement; none = never stop")


class TrainConfig(Section):
    model_dir: str
    seed: int = 1
    batch_tokens: int = Field(4096, ge=1, description="source + target tokens per batch, padding included")
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    max_steps: int | None = Field(None, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    l1: float = Field(0.0, ge=0.0, description="L1 penalty on weight matrices (L2: optimizer.weight_decay)")
    clip_grad_norm: float | None = Field(1.0, gt=0.0)
    validate_every: int = Field(1000, ge=1, description="steps")
    log_every: int = Field(50, ge=1, description="steps")
    dev_sentences: int | None = Field(None, ge=1, description="validate BLEU on the first N dev pairs only")
    dev_beam: int = Field(1, ge=1, description="beam size for dev BLEU; 1 = greedy (fast)")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    keep_last: int = Field(1, ge=1, description="checkpoints kept besides the best weights")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: autocast matmuls to bfloat16 (weights, optimizer and loss stay float32); "
        "fast on GPUs and on CPUs with avx512_bf16 or AMX",
    )
    compile: bool = Field(False, description="torch.compile the model (slow first steps, then faster)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    distributed: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="under torchrun: ddp (a whole model per process) or fsdp (each process holds "
        "1/N of the weights, gradients and optimizer state: for models too big for one device)",
    )

    @model_validator(mode="after")
    def _has_an_end(self) -> TrainConfig:
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("set at least one of train.max_steps, train.max_epochs, train.max_minutes")
        return self


class DecodeConfig(Section):
    beam: int = Field(1, ge=1, description="1 = greedy")
    n_best: int = Field(1, ge=1)
    length_penalty: float = Field(1.0, ge=0.0, description="GNMT alpha; 0 = raw log-probability")
    max_len_a: float = Field(1.5, ge=0.0, description="output ≤ a × input length + b tokens")
    max_len_b: int = Field(10, ge=0)
    batch_tokens: int = Field(4096, ge=1)
    sampling: bool = False
    temperature: float = Field(1.0, gt=0.0)
    top_k: int = Field(0, ge=0, description="0 = off")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None

    @model_validator(mode="after")
    def _n_best_fits_beam(self) -> DecodeConfig:
        if self.n_best > self.beam:
            raise ValueError(f"decode.n_best ({self.n_best}) cannot exceed decode.beam ({self.beam})")
        return self


class DialogueConfig(Section):
    """How (context → reply) pairs were built, so `dragoman chat` builds its contexts the same way."""

    turns: int = Field(3, ge=1, description="previous turns in a context, the newest last")
    separator: str = Field(" | ", min_length=1, description="between the turns of a context")


TASKS = ("seq2seq", "classify", "lm")


class Config(Section):
    name: str = "dragoman"
    task: Literal["seq2seq", "classify", "lm"] = Field(
        "seq2seq",
        description="seq2seq: encoder-decoder; classify: encoder + pooling + head; lm: decoder-only",
    )
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig
    decode: DecodeConfig = DecodeConfig()
    dialogue: DialogueConfig | None = Field(None, description="seq2seq trained on dialogue contexts")

    @model_validator(mode="after")
    def _shared_embeddings_need_joint_vocab(self) -> Config:
        if self.model.share_embeddings and not self.data.joint_vocab:
            raise ValueError("model.share_embeddings needs data.joint_vocab: true")
        if self.model.share_embeddings is None:
            self.model.share_embeddings = self.data.joint_vocab
        if self.data.max_len + 2 > self.model.max_positions:
            raise ValueError(f"data.max_len + 2 must fit model.max_positions ({self.model.max_positions})")
        self._data_fits_task()
        stopping = self.train.early_stopping
        if stopping.metric is None:
            stopping.metric = TASK_METRICS[self.task][0]
        elif stopping.metric not in TASK_METRICS[self.task]:
            raise ValueError(
                f"train.early_stopping.metric: {stopping.metric} is not measured for task: {self.task}; "
                f"use one of {', '.join(TASK_METRICS[self.task])}"
            )
        return self

    def _data_fits_task(self) -> None:
        data, task = self.data, self.task
        if data.format == "csv" and task != "classify":
            raise ValueError("data.format: csv is for task: classify; other tasks read plain text files")
        if data.block_size is not None and task != "lm":
            raise ValueError("data.block_size is for task: lm")
        if data.block_size is not None and data.block_size > self.model.max_positions:
            raise ValueError(f"data.block_size must fit model.max_positions ({self.model.max_positions})")
        if task != "seq2seq" and (not data.joint_vocab or data.tgt_tokenizer is not None):
            raise ValueError(f"task: {task} has one tokenizer: remove data.joint_vocab / data.tgt_tokenizer")
        if data.format == "text" and data.src is None:
            raise ValueError("data.src: required key is missing (the suffix of the text files)")
        if task == "seq2seq" and data.tgt is None:
            raise ValueError("data.tgt: required key is missing (the suffix of the target files)")
        if task == "classify" and data.format == "text" and data.tgt is None:
            raise ValueError("data.tgt: required key is missing (the suffix of the label files)")
        if task == "lm":
            if data.tgt is not None:
                raise ValueError("data.tgt: a language model reads one side only; remove data.tgt")
            if self.model.decoder != "transformer":
                raise ValueError("task: lm is a decoder-only Transformer; set model.decoder: transformer")


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys the config section at `loc` accepts (for 'unknown key' messages)."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return sorted(model.model_fields)


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if p not in ("function-after",))
    key = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc)
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"{key}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if key == "(top level)" or message.startswith(("data.", "model.", "train.", "decode.")):
        return message
    return f"{key}: {message} (got {error.get('input')!r})"


def parse_config(raw: Any, source: str = "config") -> Config:
    if not isinstance(raw, dict):
        raise DragomanError(
            "a config must be a YAML mapping with data/model/train/decode sections", file=source
        )
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise DragomanError(
            f"invalid config: {problems}", file=source, fix="See configs/ for documented examples"
        ) from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DragomanError("config file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DragomanError(f"cannot read config: {exc}", file=path) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise DragomanError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=path, line=line) from None
    return parse_config(raw, str(path))


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
