"""The HTTP server on a tiny trained Transformer: the endpoints against `Translator`, every limit's error,
malformed and invalid requests, dynamic batching under concurrent requests (merged, kept apart by
options, a failing request failing alone), and `dragoman serve` under uvicorn with a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import anyio
import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import tiny_config, write_copy_task
from dragoman.config import parse_config
from dragoman.server import Batcher, ServerSettings, create_app
from dragoman.train import train
from dragoman.translator import Translator

HEADS, DEC_LAYERS = 2, 2
TEXTS = ["a b c", "h g f e", "", "c d e f g h", "b"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The reversal task, learnt well enough in ~150 steps that greedy and beam outputs differ from noise."""
    root = tmp_path_factory.mktemp("server")
    config = tiny_config(
        write_copy_task(root / "data", n_train=1000, n_dev=30),
        root / "model",
        {"heads": HEADS, "ff": 64, "enc_layers": 1, "dec_layers": DEC_LAYERS},
        max_steps=150,
        validate_every=150,
        optimizer={"name": "adam", "lr": 0.005},
    )
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return train(parse_config(config))


@pytest.fixture(scope="module")
def translator(model_dir) -> Translator:
    translator = Translator.load(model_dir)
    assert translator.translate(["a b c"]) == ["c b a"], "the tiny model did not learn the task"
    return translator


class Deadline:
    """The app, but a request still unanswered after `seconds` fails (500) instead of hanging the test."""

    def __init__(self, app, seconds: float = 30) -> None:
        self.app, self.seconds, self.state = app, seconds, app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # the lifespan lasts as long as the client
            return await self.app(scope, receive, send)
        with anyio.fail_after(self.seconds):
            await self.app(scope, receive, send)


@contextmanager
def serving(translator: Translator, **settings):
    """A fresh app (its batching worker runs in the TestClient's lifespan); errors come back as 500s."""
    app = create_app(translator, ServerSettings(**settings))
    with TestClient(Deadline(app), raise_server_exceptions=False) as client:
        yield client


def distinct_texts(n: int, seed: int = 1) -> list[str]:
    rng, texts = random.Random(seed), set()
    while len(texts) < n:
        texts.add(" ".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 6))))
    return sorted(texts)


@contextmanager
def threads(n: int):
    """A thread pool that does not wait for its threads on the way out: if a request hangs, the test
    fails on its result's timeout and TestClient's exit then cancels the request."""
    pool = ThreadPoolExecutor(n)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def post_all(client: TestClient, bodies: list[dict]) -> list[httpx.Response]:
    """Send every body at once from its own thread."""
    barrier = threading.Barrier(len(bodies))

    def post(body: dict) -> httpx.Response:
        barrier.wait()
        return client.post("/v1/translate", json=body)

    with threads(len(bodies)) as pool:
        return list(pool.map(post, bodies, timeout=60))


def texts_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [output["text"] for output in response.json()["outputs"]]


def assert_error(response: httpx.Response, status: int, kind: str, limit: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind
    assert error.get("limit") == limit
    return error["message"]


# --- the endpoints ---------------------------------------------------------------------------------


def test_health_model_info_docs_and_page(translator):
    with serving(translator, max_texts=7) as client:
        assert client.get("/health").json() == {"status": "ok", "requests": 0, "batches": 0}
        info = client.get("/v1/model").json()
        assert info["architecture"] == "transformer" and info["task"] == "translate"
        assert info["parameters"] == sum(p.numel() for p in translator.model.parameters())
        assert (info["src_vocab"], info["tgt_vocab"]) == (
            translator.src_tok.vocab_size,
            translator.tgt_tok.vocab_size,
        )
        assert info["max_len"] == translator.config.data.max_len
        assert info["decode"] == translator.config.decode.model_dump(mode="json")
        assert info["model"]["heads"] == HEADS
        assert info["limits"]["max_texts"] == 7
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/translate", "/v1/attention", "/v1/model", "/health"} <= set(paths)
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text and "/v1/translate" in page.text


def test_translate_equals_the_translator(translator):
    with serving(translator) as client:
        response = client.post("/v1/translate", json={"texts": TEXTS})
        assert texts_of(response) == translator.translate(TEXTS)
        expected = translator.translate_nbest(TEXTS)
        for output, nbest in zip(response.json()["outputs"], expected):
            assert output["score"] == pytest.approx(nbest[0].score, abs=1e-5)
            assert [h["text"] for h in output["n_best"]] == [output["text"]]
        assert client.get("/health").json()["requests"] == 1


def test_translate_with_beam_and_n_best(translator):
    texts = [t for t in TEXTS if t]
    with serving(translator) as client:
        response = client.post("/v1/translate", json={"texts": texts, "beam": 3, "n_best": 2})
    expected = translator.translate_nbest(texts, beam=3, n_best=2)
    for output, nbest in zip(response.json()["outputs"], expected, strict=True):
        assert [h["text"] for h in output["n_best"]] == [t.text for t in nbest]
        assert [h["score"] for h in output["n_best"]] == pytest.approx([t.score for t in nbest], abs=1e-5)
        assert output["text"] == output["n_best"][0]["text"]
        assert output["n_best"][0]["score"] >= output["n_best"][1]["score"]


def test_attention_has_one_distribution_per_output_token(translator):
    text = "a b c d"
    with serving(translator) as client:
        body = client.post("/v1/attention", json={"text": text}).json()
    assert body["translation"]["text"] == translator.translate([text])[0]
    assert body["source"] == text.split()
    assert body["target"] == [*body["translation"]["text"].split(), "</s>"]
    weights = np.array(body["weights"])
    assert weights.shape == (DEC_LAYERS, HEADS, len(body["target"]), len(body["source"]))
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-3)


# --- limits and invalid requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, at_limit, over_limit, limit",
    [
        ({"max_texts": 2}, {"texts": ["a", "b"]}, {"texts": ["a", "b", "c"]}, "max_texts"),
        ({"max_chars": 9}, {"texts": ["a b c d e"]}, {"texts": ["a", "a b c d e f"]}, "max_chars"),
        ({"max_beam": 4}, {"texts": ["a"], "beam": 4}, {"texts": ["a"], "beam": 5}, "max_beam"),
        (
            {"max_beam": 4},
            {"texts": ["a"], "beam": 4, "n_best": 4},
            {"texts": ["a"], "beam": 6, "n_best": 5},
            "max_beam",
        ),
    ],
)
def test_each_limit_answers_413_naming_it(translator, settings, at_limit, over_limit, limit):
    with serving(translator, **settings) as client:
        assert client.post("/v1/translate", json=at_limit).status_code == 200
        assert_error(client.post("/v1/translate", json=over_limit), 413, "limit", limit)
        assert client.get("/health").json()["requests"] == 1  # a refused request never reaches the model


def test_attention_checks_the_limits_too(translator):
    with serving(translator, max_chars=5, max_beam=2) as client:
        assert_error(client.post("/v1/attention", json={"text": "a b c d"}), 413, "limit", "max_chars")
        assert_error(client.post("/v1/attention", json={"text": "a", "beam": 3}), 413, "limit", "max_beam")
        assert client.post("/v1/attention", json={"text": "a b c", "beam": 2}).status_code == 200


def test_request_bytes_limit_with_and_without_content_length(translator):
    small, large = {"texts": ["a b"]}, {"texts": ["a b"] * 40}
    with serving(translator, max_request_bytes=200) as client:
        response = client.post("/v1/translate", json=large)
        assert int(response.request.headers["content-length"]) > 200
        assert_error(response, 413, "limit", "max_request_bytes")
        declared = {"content-type": "application/json", "content-length": "5000"}  # refused unread
        response = client.post("/v1/translate", content=json.dumps(small).encode(), headers=declared)
        assert_error(response, 413, "limit", "max_request_bytes")

        def chunks(body: dict):
            data = json.dumps(body).encode()
            yield from (data[i : i + 16] for i in range(0, len(data), 16))

        headers = {"content-type": "application/json"}
        response = client.post("/v1/translate", content=chunks(large), headers=headers)
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "limit", "max_request_bytes")
        response = client.post("/v1/translate", content=chunks(small), headers=headers)
        assert texts_of(response) == translator.translate(small["texts"])


def test_malformed_json_is_invalid_json(translator):
    with serving(translator) as client:
        response = client.post(
            "/v1/translate", content=b'{"texts": ["a b"', headers={"content-type": "application/json"}
        )
        assert "malformed JSON" in assert_error(response, 422, "invalid_json")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"texts": "a b"}, "texts"),
        ({"texts": [1, "a"]}, "texts.0"),
        ({"beam": 2}, "texts"),
        ({"texts": []}, "texts"),
        ({"texts": ["a"], "beams": 3}, "beams"),
        ({"texts": ["a"], "beam": "wide"}, "beam"),
        ({"texts": ["a"], "beam": 0}, "beam"),
        ({"texts": ["a"], "top_p": 1.5}, "top_p"),
        ({"texts": ["a"], "beam": 2, "n_best": 3}, "n_best"),
    ],
)
def test_invalid_requests_name_the_field(translator, body, field):
    with serving(translator) as client:
        message = assert_error(client.post("/v1/translate", json=body), 422, "invalid_request")
    assert message.startswith(f"{field}:") or f"decode.{field}" in message, message


def test_invalid_attention_request_names_the_field(translator):
    with serving(translator) as client:
        message = assert_error(client.post("/v1/attention", json={"text": ["a"]}), 422, "invalid_request")
    assert message.startswith("text:")


# --- dynamic batching ------------------------------------------------------------------------------


def test_concurrent_requests_each_get_their_own_answer_and_are_merged(translator):
    texts = distinct_texts(24)
    expected = [translator.translate([text])[0] for text in texts]
    assert translator.translate(texts) == expected  # batching does not change a translation
    with serving(translator, max_wait_ms=100) as client:
        responses = post_all(client, [{"texts": [text]} for text in texts])
        health = client.get("/health").json()
    assert [texts_of(r) for r in responses] == [[e] for e in expected]
    assert health["requests"] == 24 and health["batches"] < 24


class Gate:
    """A copy of `model` whose first call of `method` holds the model thread until `run` opens it, so
    that requests sent meanwhile all wait in the batcher's queue and its next gather takes them
    together: deterministic merging. `calls` records the texts of each model call; a call
    containing `fail_on` raises."""

    def __init__(self, model, method: str = "translate_nbest", fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.entered, self.released = threading.Event(), threading.Event()
        # a second one on the same weights, so the test's own translator/classifier stays as it is
        parts = (model.tokenizer, model.labels) if method == "classify" else (model.src_tok, model.tgt_tok)
        self.model = type(model)(model.model, model.config, *parts)
        original = getattr(self.model, method)

        def gated(texts: list[str], **options):
            self.calls.append(list(texts))
            if len(self.calls) == 1:
                self.entered.set()
                assert self.released.wait(30)
            if fail_on in texts:
                raise RuntimeError(f"the model cannot translate {fail_on!r}")
            return original(texts, **options)

        setattr(self.model, method, gated)

    def run(
        self, client: TestClient, bodies: list[dict], queued: int | None = None, path: str = "/v1/translate"
    ) -> list[httpx.Response]:
        """Post a first request to `path`, then `bodies` at once; open when `queued` of them (default:
        all) wait."""
        batcher = client.app.state.batcher
        first_body = {"prompts": ["a"]} if path == "/v1/generate" else {"texts": ["a"]}
        queued = len(bodies) if queued is None else queued
        with threads(len(bodies) + 1) as pool:
            first = pool.submit(client.post, path, json=first_body)
            try:
                assert self.entered.wait(30)
                futures = [pool.submit(client.post, path, json=body) for body in bodies]
                deadline = time.monotonic() + 30
                while batcher.requests < 1 + queued:
                    assert time.monotonic() < deadline, "the requests never reached the batcher"
                    time.sleep(0.005)
            finally:
                self.released.set()
            assert first.result(timeout=60).status_code == 200
            return [future.result(timeout=60) for future in futures]


@pytest.mark.parametrize("max_batch_tokens, merged", [(4096, True), (1, False)])
def test_waiting_requests_become_one_model_call(translator, max_batch_tokens, merged):
    texts = distinct_texts(10, seed=2)
    gate = Gate(translator)
    with serving(gate.model, max_wait_ms=0, max_batch_tokens=max_batch_tokens) as client:
        responses = gate.run(client, [{"texts": [text]} for text in texts], queued=len(texts))
        health = client.get("/health").json()
    assert [texts_of(r) for r in responses] == [[t] for t in translator.translate(texts)]
    if merged:  # max_wait_ms 0 still takes what already waits
        assert health["batches"] == 2 and sorted(gate.calls[1]) == texts
    else:  # one source token per model call: every request alone
        assert health["batches"] == 1 + len(texts) and all(len(call) == 1 for call in gate.calls)


def test_requests_with_different_options_in_one_window(translator):
    greedy, beam, sampled = ["a b c", "d e f g"], ["h g f e", "b c"], ["a b c d e f", "c c d"]
    bodies = [{"texts": [t]} for t in greedy] + [{"texts": [t], "beam": 3, "n_best": 2} for t in beam]
    sampling = {"sampling": True, "temperature": 3.0, "seed": 7}
    bodies += [{"texts": [t], **sampling} for t in sampled]
    gate = Gate(translator)
    with serving(gate.model, max_wait_ms=0) as client:
        responses = gate.run(client, bodies, queued=len(bodies))
        health = client.get("/health").json()
    # one call for the gate, one per set of options, and one per seeded sampling request
    assert health["batches"] == 1 + 2 + len(sampled)
    assert [texts_of(r)[0] for r in responses[:2]] == translator.translate(greedy)
    expected = translator.translate_nbest(beam, beam=3, n_best=2)
    for response, nbest in zip(responses[2:4], expected):
        assert [h["text"] for h in response.json()["outputs"][0]["n_best"]] == [t.text for t in nbest]
    for response, text in zip(responses[4:], sampled):  # seeded as if alone, whatever else waited
        assert texts_of(response) == translator.translate([text], **sampling)


def test_seeded_sampling_is_reproducible(translator):
    texts = ["a b c d e f", "h h g", "c"]
    options = {"sampling": True, "temperature": 3.0, "seed": 11}
    expected = translator.translate(texts, **options)
    with serving(translator) as client:
        first = texts_of(client.post("/v1/translate", json={"texts": texts, **options}))
        again = texts_of(client.post("/v1/translate", json={"texts": texts, **options}))
    assert first == again == expected


def test_a_refused_request_does_not_disturb_the_others(translator):
    texts = distinct_texts(6, seed=3)
    bodies = (
        [{"texts": [t]} for t in texts[:3]] + [{"texts": ["a"] * 5}] + [{"texts": [t]} for t in texts[3:]]
    )
    gate = Gate(translator)
    with serving(gate.model, max_wait_ms=0, max_texts=4) as client:
        responses = gate.run(client, bodies, queued=len(texts))
        health = client.get("/health").json()
    assert_error(responses.pop(3), 413, "limit", "max_texts")
    assert [texts_of(r) for r in responses] == [[t] for t in translator.translate(texts)]
    assert health["batches"] == 2


def test_a_failing_request_fails_alone_in_a_merged_batch(translator):
    texts, culprit = distinct_texts(6, seed=4), "h h h h"
    bodies = [{"texts": [t]} for t in texts] + [{"texts": ["a b", culprit]}]
    gate = Gate(translator, fail_on=culprit)
    with serving(gate.model, max_wait_ms=0) as client:
        responses = gate.run(client, bodies, queued=len(bodies))
        health = client.get("/health").json()
    assert responses.pop().status_code == 500
    assert [texts_of(r) for r in responses] == [[t] for t in translator.translate(texts)]
    assert culprit in gate.calls[1] and len(gate.calls[1]) == len(texts) + 2  # it was merged, then
    assert health["batches"] == 1 + 1 + len(bodies)  # each request was retried alone


def test_a_request_abandoned_during_a_failing_call_does_not_stop_the_worker(translator, monkeypatch):
    entered, released = threading.Event(), threading.Event()
    original = translator.translate_nbest

    def translate_nbest(texts: list[str], **options):
        if texts == ["a b"]:
            entered.set()
            released.wait(10)
            raise RuntimeError("the model failed")
        return original(texts, **options)

    monkeypatch.setattr(translator, "translate_nbest", translate_nbest)

    async def scenario() -> list:
        batcher = Batcher(translator.translate_nbest, len, max_batch_tokens=4096, max_wait_ms=0)
        worker = asyncio.create_task(batcher.run_forever())
        abandoned = asyncio.create_task(batcher.submit(["a b"], {}))
        assert await asyncio.to_thread(entered.wait, 10)
        abandoned.cancel()  # the client went away while its failing call runs
        released.set()
        try:
            return await asyncio.wait_for(batcher.submit(["c d"], {}), 5)
        finally:
            worker.cancel()
            batcher.executor.shutdown()

    assert asyncio.run(scenario())[0][0].text == original(["c d"])[0][0].text


# --- `dragoman serve` under uvicorn ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not answer {url} within {seconds} s")


def other_address() -> str | None:
    """This machine's address on its default route, if it has one besides loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # sends nothing
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def post_chunked(port: int, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (body[i : i + 100] for i in range(0, len(body), 100))
    headers = {"Content-Type": "application/json"}
    connection.request("POST", "/v1/translate", body=chunks, headers=headers, encode_chunked=True)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_serve_finishes_the_request_in_flight_on_sigterm(model_dir, translator):
    port = free_port()
    command = [sys.executable, "-m", "dragoman", "serve", str(model_dir), "--port", str(port)]
    command += ["--max-wait-ms", "500", "--max-request-bytes", "2000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/health")
        if (address := other_address()) is not None:  # listens on loopback only by default
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{address}:{port}/health", timeout=2)
        texts = ["a b c", "h g f e"]
        assert texts_of(httpx.post(f"{url}/v1/translate", json={"texts": texts}, timeout=30)) == (
            translator.translate(texts)
        )
        status, body = post_chunked(port, json.dumps({"texts": ["a b"] * 300}).encode())
        assert (status, body["error"]["limit"]) == (413, "max_request_bytes")

        in_flight = ["d e f", "c c b a"]
        with threads(1) as pool:
            future = pool.submit(httpx.post, f"{url}/v1/translate", json={"texts": in_flight}, timeout=30)
            while httpx.get(f"{url}/health", timeout=5).json()["requests"] < 2:  # it waits in the batcher
                assert not future.done(), future.result().text
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            assert texts_of(future.result(timeout=60)) == translator.translate(in_flight)
        assert process.wait(30) == 0
        log = process.communicate()[1]
        assert f"http://127.0.0.1:{port}" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_max_beam_also_bounds_the_models_default_beam(translator):
    translator.config.decode.beam = 8
    try:
        with serving(translator, max_beam=4) as client:
            assert_error(client.post("/v1/translate", json={"texts": ["a"]}), 413, "limit", "max_beam")
            assert client.post("/v1/translate", json={"texts": ["a"], "beam": 4}).status_code == 200
    finally:
        translator.config.decode.beam = 1


def test_unknown_paths_and_server_errors_answer_in_the_error_format(translator, monkeypatch):
    with serving(translator) as client:
        assert_error(client.get("/v1/nothing"), 404, "http")
        assert_error(client.get("/v1/translate"), 405, "http")

    def broken(*args, **kwargs):
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(translator, "translate_nbest", broken)
    with TestClient(create_app(translator), raise_server_exceptions=False) as client:
        message = assert_error(client.post("/v1/translate", json={"texts": ["a"]}), 500, "server_error")
        assert "the model fell over" in message
        monkeypatch.undo()
        assert client.post("/v1/translate", json={"texts": ["a"]}).status_code == 200  # the worker lives on


def test_an_app_can_start_twice(translator):
    app = create_app(translator)
    for _ in range(2):
        with TestClient(app) as client:
            assert client.post("/v1/translate", json={"texts": ["a b"]}).status_code == 200


def test_attention_reads_a_given_output(translator):
    with serving(translator) as client:
        body = client.post("/v1/attention", json={"text": "a b c", "target": "c b a a"}).json()
    assert body["target"] == [*translator.tgt_tok.pieces(translator.tgt_tok.encode("c b a a")), "</s>"]
    assert body["translation"]["text"] == "c b a a"
    assert body["translation"]["score"] < 0
    assert len(body["weights"][0][0]) == len(body["target"])


def test_serve_help_gives_the_defaults_that_apply(capsys):
    from dragoman.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, value in ServerSettings().model_dump().items():
        assert f"--{name.replace('_', '-')}" in shown
        assert f"({value:.10g})" in shown, name
