"""The HTTP server on the other tasks: a tiny classifier (task: classify) on /v1/classify and a tiny
language model (task: lm) on /v1/generate, each against its Python API (TextClassifier.classify,
Translator.translate_nbest); their dynamic batching, limits and invalid requests; every endpoint of
another task answering `wrong_task`; and `dragoman serve` loading a classifier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import tiny_config, write_copy_task
from dragoman.classify import TextClassifier
from dragoman.config import parse_config
from dragoman.server import ENDPOINTS, load
from dragoman.train import train
from dragoman.translator import Translator
from tests.test_server import Gate, assert_error, free_port, serving, wait_until_up
from tests.test_tasks import classify_config, lm_config

TEXTS = ["a a a", "d b b e b", "c c c", "", "h c c c"]
PROMPTS = ["b c", "d", "", "a b c d a", "c"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return train(parse_config(classify_config(tmp_path_factory.mktemp("classify"))))


@pytest.fixture(scope="module")
def classifier(classifier_dir) -> TextClassifier:
    classifier = TextClassifier.load(classifier_dir)
    assert [p.label for p in classifier.classify(TEXTS[:3])] == ["positive", "negative", "neutral"], (
        "the tiny classifier did not learn its task"
    )
    return classifier


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    """The language model of tests/test_tasks.py: lines cycling through a b c d."""
    return train(parse_config(lm_config(tmp_path_factory.mktemp("lm"))))


@pytest.fixture(scope="module")
def generator(lm_dir) -> Translator:
    generator = Translator.load(lm_dir)
    assert generator.translate(["b c"]) == ["b c d a b c d a"], "the tiny language model did not learn"
    return generator


@pytest.fixture(scope="module")
def seq2seq_dir(tmp_path_factory) -> Path:
    """An encoder-decoder barely trained: only its task matters here."""
    root = tmp_path_factory.mktemp("seq2seq")
    data = write_copy_task(root / "data", n_train=50, n_dev=5)
    return train(parse_config(tiny_config(data, root / "model", max_steps=2)))


@pytest.fixture(scope="module")
def translator(seq2seq_dir) -> Translator:
    return Translator.load(seq2seq_dir)


def outputs(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["outputs"]


# --- /v1/classify ----------------------------------------------------------------------------------


def test_classify_equals_the_classifier(classifier):
    expected = classifier.classify(TEXTS)
    with serving(classifier) as client:
        plain = outputs(client.post("/v1/classify", json={"texts": TEXTS}))
        every = outputs(client.post("/v1/classify", json={"texts": TEXTS, "all": True}))
        health = client.get("/health").json()
    assert [o["label"] for o in plain] == [p.label for p in expected]
    assert [o["probability"] for o in plain] == pytest.approx([p.probability for p in expected], abs=1e-6)
    assert all(set(o) == {"label", "probability"} for o in plain)  # probabilities only when asked
    for output, prediction in zip(every, expected, strict=True):
        assert list(output["probabilities"]) == classifier.labels.names  # in the labels' order
        assert output["probabilities"] == pytest.approx(prediction.probabilities, abs=1e-6)
        assert output["probability"] == max(output["probabilities"].values())
    assert health == {"status": "ok", "requests": 2, "batches": 2}


def test_model_info_names_the_task_its_endpoints_and_labels(classifier, generator):
    with serving(classifier, max_texts=5) as client:
        info = client.get("/v1/model").json()
        assert (info["task"], info["endpoints"]) == ("classify", ["/v1/classify"])
        assert info["labels"] == ["negative", "neutral", "positive"]
        assert info["src_vocab"] == classifier.tokenizer.vocab_size and "tgt_vocab" not in info
        assert info["architecture"] == "transformer classifier"
        assert info["parameters"] == sum(p.numel() for p in classifier.model.parameters())
        assert info["limits"]["max_texts"] == 5
        paths = client.get("/openapi.json").json()["paths"]  # one schema, whatever the model
        assert {"/v1/translate", "/v1/attention", "/v1/classify", "/v1/generate"} <= set(paths)
        assert client.get("/").status_code == 200
    with serving(generator) as client:
        info = client.get("/v1/model").json()
        assert (info["task"], info["endpoints"]) == ("generate", ["/v1/generate"])
        assert info["architecture"] == "transformer language model"
        assert info["src_vocab"] == info["tgt_vocab"] == generator.tgt_tok.vocab_size
        assert info["decode"] == generator.config.decode.model_dump(mode="json")
        assert info["limits"]["max_tokens"] == generator.config.model.max_positions - 2
        assert client.get("/health").json() == {"status": "ok", "requests": 0, "batches": 0}


# --- /v1/generate ----------------------------------------------------------------------------------


def assert_generations(response: httpx.Response, prompts: list[str], expected: list) -> None:
    """The outputs equal `Translator.translate_nbest`'s, each starting with its prompt."""
    for output, prompt, nbest in zip(outputs(response), prompts, expected, strict=True):
        assert [h["text"] for h in output["n_best"]] == [t.text for t in nbest]
        assert [h["score"] for h in output["n_best"]] == pytest.approx([t.score for t in nbest], abs=1e-5)
        assert (output["text"], output["score"]) == (
            output["n_best"][0]["text"],
            output["n_best"][0]["score"],
        )
        assert output["prompt"] == prompt  # a word model reads these prompts unchanged
        assert all(h["text"].startswith(prompt) for h in output["n_best"])


def test_generate_equals_the_translator(generator):
    with serving(generator) as client:
        greedy = client.post("/v1/generate", json={"prompts": PROMPTS})
        beam = client.post("/v1/generate", json={"prompts": PROMPTS, "beam": 3, "n_best": 2})
        short = client.post("/v1/generate", json={"prompts": PROMPTS, "max_tokens": 3})
    assert_generations(greedy, PROMPTS, generator.translate_nbest(PROMPTS))
    assert_generations(beam, PROMPTS, generator.translate_nbest(PROMPTS, beam=3, n_best=2))
    assert all(len(o["n_best"]) == 2 for o in outputs(beam))
    # max_tokens N is max_len_a 0, max_len_b N, as `dragoman generate --max-tokens N`
    assert_generations(short, PROMPTS, generator.translate_nbest(PROMPTS, max_len_a=0, max_len_b=3))
    for output, prompt in zip(outputs(short), PROMPTS):
        assert len(output["text"].split()) == len(prompt.split()) + 3  # the pattern never ends sooner


def test_seeded_sampling_is_reproducible(generator):
    options = {"sampling": True, "temperature": 3.0, "seed": 5, "max_tokens": 6}
    expected = generator.translate_nbest(
        PROMPTS, sampling=True, temperature=3.0, seed=5, max_len_a=0, max_len_b=6
    )
    with serving(generator) as client:
        first = client.post("/v1/generate", json={"prompts": PROMPTS, **options})
        again = client.post("/v1/generate", json={"prompts": PROMPTS, **options})
        other = client.post("/v1/generate", json={"prompts": PROMPTS, **options, "seed": 6})
    assert outputs(first) == outputs(again)
    assert_generations(first, PROMPTS, expected)
    assert [o["text"] for o in outputs(other)] != [o["text"] for o in outputs(first)]  # temperature 3


# --- dynamic batching ------------------------------------------------------------------------------


def test_concurrent_classify_requests_become_one_model_call(classifier):
    texts = ["a a a", "b d b b", "c c e c", "a h a a", "b b b", "c c c d"]
    gate = Gate(classifier, "classify")
    with serving(gate.model, max_wait_ms=0) as client:
        responses = gate.run(client, [{"texts": [t], "all": True} for t in texts], path="/v1/classify")
        health = client.get("/health").json()
    assert health["batches"] == 2 and sorted(gate.calls[1]) == sorted(texts)
    for response, text in zip(responses, texts, strict=True):
        (output,) = outputs(response)
        (alone,) = classifier.classify([text])
        assert output["label"] == alone.label
        assert output["probabilities"] == pytest.approx(alone.probabilities, abs=1e-5)


def test_concurrent_generate_requests_are_merged_by_options(generator):
    greedy, short, beam, sampled = ["a", "b c"], ["c", "d a"], ["b", "c d a"], ["a b", "d"]
    bodies = [{"prompts": [p]} for p in greedy] + [{"prompts": [p], "max_tokens": 2} for p in short]
    bodies += [{"prompts": [p], "beam": 3, "n_best": 2} for p in beam]
    sampling = {"sampling": True, "temperature": 3.0, "seed": 7}
    bodies += [{"prompts": [p], **sampling} for p in sampled]
    gate = Gate(generator, "translate_nbest")
    with serving(gate.model, max_wait_ms=0) as client:
        responses = gate.run(client, bodies, path="/v1/generate")
        health = client.get("/health").json()
    # one call for the gate, one per set of options, one per seeded sampling request
    assert health["batches"] == 1 + 3 + len(sampled)
    # in whatever order the worker took them: the merged groups, and each seeded request alone
    merged = sorted(sorted(call) for call in gate.calls[1:] if len(call) > 1)
    assert merged == sorted(map(sorted, [greedy, short, beam]))
    assert sorted(call[0] for call in gate.calls[1:] if len(call) == 1) == sorted(sampled)
    options = [{}] * 2 + [{"max_len_a": 0, "max_len_b": 2}] * 2 + [{"beam": 3, "n_best": 2}] * 2
    options += [sampling] * 2  # seeded sampling as if alone, whatever else waited
    for response, prompt, kwargs in zip(responses, greedy + short + beam + sampled, options, strict=True):
        assert_generations(response, [prompt], generator.translate_nbest([prompt], **kwargs))


# --- limits, invalid requests, the wrong task -------------------------------------------------------


@pytest.mark.parametrize(
    "settings, at_limit, over_limit, limit",
    [
        ({"max_texts": 2}, {"texts": ["a", "b"]}, {"texts": ["a", "b", "c"]}, "max_texts"),
        ({"max_chars": 5}, {"texts": ["a a a"]}, {"texts": ["a", "a a a b"]}, "max_chars"),
        ({"max_request_bytes": 100}, {"texts": ["a a"] * 5}, {"texts": ["a a"] * 30}, "max_request_bytes"),
    ],
)
def test_classify_limits(classifier, settings, at_limit, over_limit, limit):
    with serving(classifier, **settings) as client:
        assert client.post("/v1/classify", json=at_limit).status_code == 200
        assert_error(client.post("/v1/classify", json=over_limit), 413, "limit", limit)
        assert client.get("/health").json()["requests"] == 1  # a refused request never reaches the model


@pytest.mark.parametrize(
    "settings, at_limit, over_limit, limit",
    [
        ({"max_texts": 2}, {"prompts": ["a", "b"]}, {"prompts": ["a", "b", "c"]}, "max_texts"),
        ({"max_chars": 3}, {"prompts": ["a b"]}, {"prompts": ["a", "a b c"]}, "max_chars"),
        ({"max_beam": 2}, {"prompts": ["a"], "beam": 2}, {"prompts": ["a"], "beam": 3}, "max_beam"),
        ({}, {"prompts": ["a"], "max_tokens": 1022}, {"prompts": ["a"], "max_tokens": 1023}, "max_tokens"),
    ],
)
def test_generate_limits(generator, settings, at_limit, over_limit, limit):
    assert generator.config.model.max_positions == 1024  # the max_tokens case's numbers
    with serving(generator, **settings) as client:
        assert client.post("/v1/generate", json=at_limit).status_code == 200
        message = assert_error(client.post("/v1/generate", json=over_limit), 413, "limit", limit)
        assert client.get("/health").json()["requests"] == 1
    if limit == "max_tokens":
        assert message == "max_tokens 1023; at most 1022 for this model"


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/v1/classify", {"texts": "a b"}, "texts"),
        ("/v1/classify", {"texts": []}, "texts"),
        ("/v1/classify", {"texts": ["a"], "beam": 2}, "beam"),
        ("/v1/classify", {"texts": ["a"], "all": "every"}, "all"),
        ("/v1/generate", {"texts": ["a"]}, "prompts"),
        ("/v1/generate", {"prompts": ["a"], "max_tokens": 0}, "max_tokens"),
        ("/v1/generate", {"prompts": ["a"], "max_len_b": 5}, "max_len_b"),  # max_tokens says it
        ("/v1/generate", {"prompts": ["a"], "beam": 2, "n_best": 3}, "n_best"),
        ("/v1/generate", {"prompts": ["a"], "top_p": 0}, "top_p"),
    ],
)
def test_invalid_requests_name_the_field(classifier, generator, path, body, field):
    with serving(classifier if path == "/v1/classify" else generator) as client:
        message = assert_error(client.post(path, json=body), 422, "invalid_request")
    assert message.startswith(f"{field}:") or f"decode.{field}" in message, message


BODIES = {
    "/v1/translate": {"texts": ["a b"]},
    "/v1/attention": {"text": "a b"},
    "/v1/classify": {"texts": ["a b"]},
    "/v1/generate": {"prompts": ["a b"]},
}


@pytest.mark.parametrize("name", ["translator", "classifier", "generator"])
def test_the_endpoints_of_other_tasks_answer_wrong_task(name, request):
    model = request.getfixturevalue(name)
    task = model.config.task
    served = ENDPOINTS[{"seq2seq": "translate", "classify": "classify", "lm": "generate"}[task]]
    with serving(model) as client:
        for path, body in BODIES.items():
            if path in served:
                assert client.post(path, json=body).status_code == 200, path
                continue
            for sent in (body, {"anything": 1}):  # refused before its fields are read
                message = assert_error(client.post(path, json=sent), 409, "wrong_task")
                error = client.post(path, json=sent).json()["error"]
                assert (error["task"], error["endpoint"]) == (task, served[0])
                assert f"(task: {task})" in message and f"POST {served[0]}" in message
        assert client.get("/health").json()["requests"] == 1  # /v1/attention does not count


def test_load_picks_the_class_by_task(classifier_dir, lm_dir, seq2seq_dir):
    assert isinstance(load(classifier_dir), TextClassifier)
    assert isinstance(generator := load(lm_dir), Translator) and generator.lm
    assert isinstance(translator := load(seq2seq_dir), Translator) and not translator.lm


def test_serve_serves_a_classifier(classifier_dir, classifier):
    port = free_port()
    command = [sys.executable, "-m", "dragoman", "serve", str(classifier_dir), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/health")
        assert httpx.get(f"{url}/v1/model", timeout=5).json()["task"] == "classify"
        answer = httpx.post(f"{url}/v1/classify", json={"texts": TEXTS[:3]}, timeout=30)
        assert [o["label"] for o in outputs(answer)] == [p.label for p in classifier.classify(TEXTS[:3])]
        answer = httpx.post(f"{url}/v1/translate", json={"texts": ["a"]}, timeout=30)
        assert_error(answer, 409, "wrong_task")
    finally:
        process.terminate()
        process.wait(30)
    assert "transformer classifier" in process.communicate()[1]
