"""The HTTP server: FastAPI + uvicorn, dynamic batching, request limits and the web page.

dragoman serve runs/transformer          # http://127.0.0.1:8000/ (page), /docs (OpenAPI)

One model per server; its task (the config's `task:`) decides which endpoints answer:
POST /v1/translate  {"texts": ["Save the file"], "beam": 5}  → {"outputs": [{"text", "score", "n_best"}]}
POST /v1/attention  {"text": "Save the file"}                → the translation, its tokens, the attention
POST /v1/classify   {"texts": ["great phone"], "all": true}  → {"outputs": [{"label", "probability", …}]}
POST /v1/generate   {"prompts": ["Once"], "max_tokens": 20}  → {"outputs": [{"text", "score", "prompt", …}]}
GET  /v1/model      the model's task, config, size and the server's limits
GET  /health        liveness, with how many requests and model batches were served
An endpoint of another task answers 409 {"error": {"type": "wrong_task", "endpoint": the right one}}.

Dynamic batching: a request's texts wait in a queue; one worker takes everything that arrived within
`max_wait_ms` of the first (up to `max_batch_tokens` input tokens), groups it by decoding options and
runs each group as one model call on a worker thread, so the event loop keeps accepting requests
while the model works. A request that fails alone (see `Batcher._run`) never fails the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dragoman.classify import Prediction, TextClassifier
from dragoman.errors import DragomanError
from dragoman.translator import Translation, Translator, load_model

log = logging.getLogger("dragoman")
PAGE = Path(__file__).parent / "web" / "index.html"

# the config's task → what the server does with it (`task` in /v1/model) and the endpoints that answer
SERVES = {"seq2seq": "translate", "classify": "classify", "lm": "generate"}
ENDPOINTS = {
    "translate": ["/v1/translate", "/v1/attention"],
    "classify": ["/v1/classify"],
    "generate": ["/v1/generate"],
}
KIND = {"seq2seq": "a translation model", "classify": "a classifier", "lm": "a language model"}


class ServerSettings(BaseModel):
    """Batching and limits; `dragoman serve --help` lists them as options."""

    model_config = ConfigDict(extra="forbid")
    max_batch_tokens: int = Field(4096, ge=1, description="input tokens gathered into one model call")
    max_wait_ms: float = Field(5.0, ge=0, description="how long the first request waits for company")
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_chars: int = Field(2000, ge=1, description="characters per text")
    max_request_bytes: int = Field(1_000_000, ge=1, description="size of a request body")
    max_beam: int = Field(16, ge=1, description="largest beam (and n-best) a request may ask for")


# --- the API's messages ----------------------------------------------------------------------------


class SearchOptions(BaseModel):
    """Decoding options; each one left out takes the model's `decode` section."""

    model_config = ConfigDict(extra="forbid")
    beam: int | None = Field(None, ge=1)
    n_best: int | None = Field(None, ge=1)
    length_penalty: float | None = Field(None, ge=0)
    sampling: bool | None = None
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    def overrides(self) -> dict:
        """The options given, as keyword arguments of `Translator.translate_nbest` (a request's
        texts and other fields left out)."""
        return self.model_dump(exclude_none=True, include=set(DecodeOptions.model_fields))


class DecodeOptions(SearchOptions):
    """The search's options and the output's length: at most max_len_a · source length + max_len_b."""

    max_len_a: float | None = Field(None, ge=0)
    max_len_b: int | None = Field(None, ge=0)


class TranslateRequest(DecodeOptions):
    texts: list[str] = Field(min_length=1, examples=[["Save the file as…"]])


class Hypothesis(BaseModel):
    text: str
    score: float = Field(description="summed log-probability (divided by the length penalty in beam search)")


class Output(Hypothesis):
    n_best: list[Hypothesis]

    @classmethod
    def of(cls, nbest: list[Translation], **extra) -> Output:
        """The best hypothesis, and all of them (best first) as `n_best`."""
        hypotheses = [Hypothesis(text=t.text, score=t.score) for t in nbest]
        return cls(text=nbest[0].text, score=nbest[0].score, n_best=hypotheses, **extra)


class TranslateResponse(BaseModel):
    outputs: list[Output]


class AttentionRequest(DecodeOptions):
    text: str = Field(examples=["Save the file as…"])
    target: str | None = Field(
        None, description="an output to read instead of searching for one (e.g. one /v1/translate gave)"
    )


class AttentionResponse(BaseModel):
    translation: Hypothesis
    source: list[str] = Field(description="source tokens (S)")
    target: list[str] = Field(description="output tokens (T), ending with </s>")
    weights: list[list[list[list[float]]]] | None = Field(
        description="(layers, heads, T, S) attention probabilities; null for a model without attention"
    )


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1, examples=[["what a great phone"]])
    all: bool = Field(False, description="every label's probability too")


class Classification(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float] | None = Field(None, description="every label's (with `all`)")


class ClassifyResponse(BaseModel):
    outputs: list[Classification]


class GenerateRequest(SearchOptions):
    prompts: list[str] = Field(min_length=1, examples=[["Once upon a time"]])
    max_tokens: int | None = Field(
        None, ge=1, description="new tokens at most; left out: the model's decode section (max_len_a/b)"
    )

    def overrides(self) -> dict:
        options = super().overrides()
        if self.max_tokens is not None:  # as `dragoman generate --max-tokens`
            options |= {"max_len_a": 0.0, "max_len_b": self.max_tokens}
        return options


class Generation(Output):
    prompt: str = Field(description="the prompt as the model read it; `text` and each n-best start with it")


class GenerateResponse(BaseModel):
    outputs: list[Generation]


class ErrorResponse(BaseModel):
    error: dict = Field(examples=[{"type": "limit", "limit": "max_texts", "message": "…"}])


class LimitExceeded(Exception):
    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit, self.message = limit, message


class WrongTask(Exception):
    """A request to an endpoint of another task than the model's (`task`: the config's)."""

    def __init__(self, task: str) -> None:
        self.task, self.endpoint = task, ENDPOINTS[SERVES[task]][0]
        self.message = f"this server has {KIND[task]} (task: {task}): it answers POST {self.endpoint}"
        super().__init__(self.message)


# --- dynamic batching ------------------------------------------------------------------------------


@dataclass
class _Job:
    texts: list[str]
    options: dict
    tokens: int
    future: asyncio.Future
    alone: bool = False  # seeded sampling: other texts in the batch would change its random draws


@dataclass
class Batcher:
    """Gathers concurrent requests into model calls, run one at a time on a worker thread.

    `predict(texts, **options)` is the model call, one result per text (`translate_nbest`,
    `classify`); `count(texts)` the input tokens a request adds towards `max_batch_tokens`."""

    predict: Callable[..., list]
    count: Callable[[list[str]], int]
    max_batch_tokens: int
    max_wait_ms: float
    batches: int = 0  # model calls made by `predict`
    requests: int = 0
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "dragoman-model"))

    async def submit(self, texts: list[str], options: dict) -> list:
        """`predict(texts, **options)`, run with whatever else waits with the same options."""
        tokens = max(1, self.count(texts))
        alone = bool(options.get("sampling") and options.get("seed") is not None)
        job = _Job(texts, options, tokens, asyncio.get_running_loop().create_future(), alone)
        self.requests += 1
        await self.queue.put(job)
        return await job.future

    async def call(self, function, *args, **kwargs):
        """Run other model work (attention) on the same thread, so calls never overlap."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args, **kwargs))

    async def run_forever(self) -> None:
        while True:
            jobs = await self._gather()
            groups: dict[object, list[_Job]] = {}
            for job in jobs:  # `options` are complete (every decode field), so equal means same search
                key = id(job) if job.alone else tuple(sorted(job.options.items()))
                groups.setdefault(key, []).append(job)
            for group in groups.values():
                try:
                    await self._run(group)
                except Exception as exc:  # never let the worker die: every later request would hang
                    log.exception("batch failed")
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)

    async def _gather(self) -> list[_Job]:
        """The first waiting job and whatever arrives within max_wait_ms, up to max_batch_tokens."""
        jobs = [await self.queue.get()]
        tokens = jobs[0].tokens
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while tokens < self.max_batch_tokens:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
            jobs.append(job)
            tokens += job.tokens
        return jobs

    async def _run(self, group: list[_Job]) -> None:
        live = [job for job in group if not job.future.done()]  # a client may have gone away
        if not live:
            return
        texts = [text for job in live for text in job.texts]
        try:
            self.batches += 1
            results = await self.call(self.predict, texts, **live[0].options)
        except Exception as exc:
            if len(live) > 1:  # find the culprit: each job alone, so one bad request fails alone
                for job in live:
                    await self._run([job])
                return
            if not live[0].future.done():  # its client may have gone away during the call
                live[0].future.set_exception(exc)
            return
        start = 0
        for job in live:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)


# --- the application -------------------------------------------------------------------------------


def create_app(model: Translator | TextClassifier, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app for one model (a Translator for seq2seq and lm, a TextClassifier for classify);
    `serve` runs it with uvicorn, tests with TestClient."""
    settings = settings or ServerSettings()
    task = model.config.task
    serves = SERVES[task]
    tokenizer = model.tokenizer if serves == "classify" else model.src_tok

    def count(texts: list[str]) -> int:
        return sum(map(len, tokenizer.encode_batch(texts)))

    batcher = Batcher(_predict(model, serves), count, settings.max_batch_tokens, settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.queue = asyncio.Queue()  # bound to the server's event loop
        batcher.executor = ThreadPoolExecutor(1, "dragoman-model")  # a fresh one at every start
        worker = asyncio.create_task(batcher.run_forever())
        yield
        worker.cancel()  # uvicorn has finished the requests in flight by now
        batcher.executor.shutdown(wait=True)

    app = FastAPI(
        title="dragoman",
        summary=f"{model.config.name}: {describe(model)}",
        lifespan=lifespan,
        responses={
            409: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
    )
    app.state.batcher, app.state.settings = batcher, settings
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    _add_error_handlers(app)

    def only(endpoint_task: str):
        """A dependency that refuses the request (before reading its fields) unless the model serves it."""

        def check_task() -> None:
            if serves != endpoint_task:
                raise WrongTask(task)

        return [Depends(check_task)]

    def check_texts(texts: list[str]) -> None:
        if len(texts) > settings.max_texts:
            raise LimitExceeded("max_texts", f"{len(texts)} texts; at most {settings.max_texts} per request")
        for i, text in enumerate(texts):
            if len(text) > settings.max_chars:
                raise LimitExceeded(
                    "max_chars", f"text {i} has {len(text)} characters; at most {settings.max_chars}"
                )

    def check(options: SearchOptions, texts: list[str]) -> dict:
        check_texts(texts)
        try:  # the model's decode section with the request's options, checked (e.g. n_best ≤ beam)
            decode = model.decode_config(**options.overrides()).model_dump()
        except DragomanError as exc:
            raise HTTPException(422, str(exc)) from None
        if decode["beam"] > settings.max_beam:  # n_best ≤ beam, so this bounds n_best too
            raise LimitExceeded("max_beam", f"beam {decode['beam']}; at most {settings.max_beam}")
        return decode

    @app.post("/v1/translate", response_model=TranslateResponse, dependencies=only("translate"))
    async def translate(request: TranslateRequest) -> TranslateResponse:
        results = await batcher.submit(request.texts, check(request, request.texts))
        return TranslateResponse(outputs=[Output.of(nbest) for nbest in results])

    @app.post("/v1/attention", response_model=AttentionResponse, dependencies=only("translate"))
    async def attention(request: AttentionRequest) -> AttentionResponse:
        options = check(request, [request.text])
        alignment = await batcher.call(model.align, request.text, request.target, **options)
        best = alignment.translation
        return AttentionResponse(
            translation=Hypothesis(text=best.text, score=best.score),
            source=alignment.source,
            target=alignment.target,
            weights=None if alignment.weights is None else alignment.weights.round(4).tolist(),
        )

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        response_model_exclude_none=True,
        dependencies=only("classify"),
    )
    async def classify(request: ClassifyRequest) -> ClassifyResponse:
        check_texts(request.texts)
        predictions: list[Prediction] = await batcher.submit(request.texts, {})
        return ClassifyResponse(
            outputs=[
                Classification(
                    label=p.label,
                    probability=p.probability,
                    probabilities=p.probabilities if request.all else None,
                )
                for p in predictions
            ]
        )

    @app.post("/v1/generate", response_model=GenerateResponse, dependencies=only("generate"))
    async def generate(request: GenerateRequest) -> GenerateResponse:
        limit = max_new_tokens(model)
        if request.max_tokens is not None and request.max_tokens > limit:
            raise LimitExceeded(
                "max_tokens", f"max_tokens {request.max_tokens}; at most {limit} for this model"
            )
        results = await batcher.submit(request.prompts, check(request, request.prompts))
        return GenerateResponse(outputs=[Generation.of(nbest, prompt=prompt) for prompt, nbest in results])

    @app.get("/v1/model")
    async def model_info() -> dict:
        return _model_info(model, serves, settings)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "requests": batcher.requests, "batches": batcher.batches}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app


def _predict(model: Translator | TextClassifier, serves: str) -> Callable[..., list]:
    """The model call that the batcher makes for this task (the method is looked up at each call)."""
    if serves == "classify":
        return lambda texts: model.classify(texts)
    if serves == "generate":
        return functools.partial(_generate, model)
    return lambda texts, **options: model.translate_nbest(texts, **options)


def _generate(generator: Translator, prompts: list[str], **options) -> list[tuple[str, list[Translation]]]:
    """Each prompt continued, with the prompt as the model read it (tokenized, truncated to
    data.max_len, detokenized): the part of each output that the page shows as given, not generated."""
    results = generator.translate_nbest(prompts, **options)
    max_len = generator.config.data.max_len
    read = [generator.tgt_tok.decode(ids[:max_len]) for ids in generator.src_tok.encode_batch(prompts)]
    # a tokenizer whose detokenization joins differently keeps only what every output starts with
    return [(os.path.commonprefix([p, *(t.text for t in nbest)]), nbest) for p, nbest in zip(read, results)]


def describe(model: Translator | TextClassifier) -> str:
    """The architecture in a few words: "transformer", "lstm-lstm+bahdanau", "gru classifier"…"""
    config = model.config
    if config.task == "classify":
        return f"{config.model.encoder} classifier"
    return "transformer language model" if config.task == "lm" else config.model.name


def _model_info(model: Translator | TextClassifier, serves: str, settings: ServerSettings) -> dict:
    """/v1/model: what the model is and does, and the limits a request must keep (for a language
    model also the most new tokens it may ask for)."""
    config = model.config
    limits = settings.model_dump()
    info = {
        "name": config.name,
        "task": serves,
        "endpoints": ENDPOINTS[serves],
        "architecture": describe(model),
        "parameters": sum(p.numel() for p in model.model.parameters()),
    }
    if serves == "classify":
        info |= {"src_vocab": model.tokenizer.vocab_size, "labels": model.labels.names}
    else:
        info |= {"src_vocab": model.src_tok.vocab_size, "tgt_vocab": model.tgt_tok.vocab_size}
    if serves == "generate":
        limits["max_tokens"] = max_new_tokens(model)
    return info | {
        "max_len": config.data.max_len,
        "model": config.model.model_dump(mode="json"),
        "decode": config.decode.model_dump(mode="json"),
        "limits": limits,
    }


def max_new_tokens(generator: Translator) -> int:
    """The most new tokens a language model can give: what an empty prompt leaves of its positions
    (the Translator stops a longer prompt's continuation earlier, where the positions run out)."""
    return generator.model.max_positions - 2


def _error(status: int, kind: str, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LimitExceeded)
    async def limit_exceeded(request: Request, exc: LimitExceeded) -> JSONResponse:
        return _error(413, "limit", exc.message, limit=exc.limit)

    @app.exception_handler(WrongTask)
    async def wrong_task(request: Request, exc: WrongTask) -> JSONResponse:
        return _error(409, "wrong_task", exc.message, task=exc.task, endpoint=exc.endpoint)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return _error(422, "invalid_json", f"malformed JSON: {first.get('ctx', {}).get('error', '')}")
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        return _error(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"])

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException too; 404 and 405 as well
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            return _error(413, "limit", str(exc.detail), limit="max_request_bytes")
        return _error(
            exc.status_code, "invalid_request" if exc.status_code == 422 else "http", str(exc.detail)
        )

    @app.exception_handler(DragomanError)
    async def dragoman_error(request: Request, exc: DragomanError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "server_error", f"{type(exc).__name__}: {exc}")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413, whether it says its
    length up front (Content-Length) or streams it."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body over {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = _error(413, "limit", message, limit="max_request_bytes")
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, message)  # FastAPI's handlers turn it into the JSON error
            return event

        await self.app(scope, limited_receive, send)


def load(model_dir: str | Path, checkpoint: str = "best") -> Translator | TextClassifier:
    """The model of a model directory, ready for `create_app`: a TextClassifier for task: classify,
    a Translator for seq2seq and lm."""
    model, config, tokenizer, target = load_model(model_dir, checkpoint)
    if config.task == "classify":
        return TextClassifier(model, config, tokenizer, target)
    return Translator(model, config, tokenizer, target)


def serve(
    model_dir: str | Path,
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: str = "best",
) -> None:
    """Load a model and serve it until SIGINT/SIGTERM; requests in flight are finished first."""
    import uvicorn

    if not PAGE.exists():
        raise DragomanError("the web page is missing from the installation", file=PAGE)
    model = load(model_dir, checkpoint)
    log.info("serving %s (%s) on http://%s:%d/", model_dir, describe(model), host, port)
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler that was there
    # before: a no-op one here, so that a clean shutdown exits with status 0
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(create_app(model, settings), host=host, port=port, timeout_graceful_shutdown=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
