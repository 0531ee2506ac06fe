"""The web page's classification and generation views in headless Chromium (Playwright), against a
live server with the tiny classifier and language model of tests/test_tasks.py: the page picks the
view of the model's task, and what it shows is checked against TextClassifier and Translator."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from dragoman.classify import TextClassifier
from dragoman.config import parse_config
from dragoman.server import create_app, load
from dragoman.train import train
from dragoman.translator import Translator
from tests import test_web  # skips without Chromium
from tests.test_tasks import classify_config, lm_config
from tests.test_web import Tab, expect, tabs

LABELS = ["negative", "neutral", "positive"]
HOSTILE = '<img src=x onerror="window.hacked=1"> & <b>a</b>'


# --- models, servers, browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    classifier = train(parse_config(classify_config(tmp_path_factory.mktemp("classify"))))
    return {"classify": classifier, "lm": train(parse_config(lm_config(tmp_path_factory.mktemp("lm"))))}


@pytest.fixture(scope="module")
def urls(model_dirs):
    """task → the URL of a live server (uvicorn on a thread) for that task's model."""
    servers = []
    for task, model_dir in model_dirs.items():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # a free port, held from now on
        server = uvicorn.Server(uvicorn.Config(create_app(load(model_dir)), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((task, server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}/"))
    deadline = time.monotonic() + 30
    for _, server, thread, _ in servers:
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "a server did not start"
            time.sleep(0.02)
    yield {task: url for task, _, _, url in servers}
    for _, server, thread, _ in servers:
        server.should_exit = True
        thread.join(timeout=30)


browser = test_web.browser  # the same module-scoped Chromium fixture


@pytest.fixture
def open_page(browser, urls):
    """task → a fresh browser tab on that task's model page, loaded and ready."""
    yield from tabs(browser, urls.__getitem__)


def run(tab: Tab, button: str, lines: list[str], items: str) -> None:
    tab.page.get_by_test_id("input").fill("\n".join(lines))
    tab.page.get_by_test_id(button).click()
    expect(tab.page.get_by_test_id(items)).to_have_count(max(len(lines), 1))


# --- classification ------------------------------------------------------------------------------------


def test_a_classifier_gets_the_classification_view(open_page):
    tab = open_page("classify")
    page = tab.page
    expect(page.get_by_test_id("classify")).to_have_text("Classify")
    expect(page.get_by_test_id("translate")).to_have_count(0)
    expect(page.get_by_test_id("options")).to_be_hidden()  # nothing to decode
    expect(page.get_by_test_id("model-meta")).to_contain_text("transformer classifier")
    expect(page.get_by_test_id("model-meta")).to_contain_text("3 labels")
    expect(page.locator("#outputs-title")).to_have_text("Labels")
    expect(page.get_by_test_id("attention")).to_be_hidden()
    assert tab.errors == []


def test_labels_probabilities_and_bars_are_the_classifiers(open_page, model_dirs):
    tab = open_page("classify")
    page, lines = tab.page, ["a a a", "d b b e b", "c h c c"]
    with page.expect_request("**/v1/classify") as request:
        run(tab, "classify", lines, "prediction")
    assert request.value.post_data_json == {"texts": lines, "all": True}
    expected = TextClassifier.load(model_dirs["classify"]).classify(lines)
    assert page.get_by_test_id("prediction-text").all_text_contents() == lines
    assert page.get_by_test_id("prediction-label").all_text_contents() == [p.label for p in expected]
    shown = page.get_by_test_id("prediction-probability").all_text_contents()
    assert shown == [f"{100 * p.probability:.1f}%" for p in expected]
    for i, prediction in enumerate(expected):
        item = page.get_by_test_id("prediction").nth(i)
        assert item.get_by_test_id("bar-label").all_text_contents() == LABELS  # every label, in order
        bars = item.get_by_test_id("bar").evaluate_all(
            """bars => bars.map(b => [b.dataset.label, +b.dataset.probability,
                b.firstChild.getBoundingClientRect().width / b.getBoundingClientRect().width,
                b.classList.contains("top")])"""
        )
        for (label, probability, width, top), name in zip(bars, LABELS, strict=True):
            assert label == name
            assert probability == pytest.approx(prediction.probabilities[name], abs=1e-5)
            assert width == pytest.approx(probability, abs=0.01)  # the bar is as long as the probability
            assert top == (name == prediction.label)
    assert tab.errors == []


def test_classified_text_goes_into_the_page_as_text(open_page):
    tab = open_page("classify")
    run(tab, "classify", [HOSTILE, "a a a"], "prediction")
    expect(tab.page.get_by_test_id("prediction-text").first).to_have_text(HOSTILE)
    assert tab.page.locator("#outputs img, #outputs b").count() == 0
    assert tab.page.evaluate("window.hacked") is None
    assert tab.errors == []


# --- generation ----------------------------------------------------------------------------------------


def shown_generations(tab: Tab) -> list[tuple[str, str]]:
    """(prompt part, continuation) of each output, as the page shows them."""
    page = tab.page
    prompts = page.locator(
        "[data-testid=generation] > [data-testid=generation-text] [data-testid=generation-prompt]"
    )
    continuations = page.locator(
        "[data-testid=generation] > [data-testid=generation-text] [data-testid=generation-continuation]"
    )
    return list(zip(prompts.all_text_contents(), continuations.all_text_contents(), strict=True))


def test_a_language_model_gets_the_generation_view(open_page, model_dirs):
    tab = open_page("lm")
    page = tab.page
    expect(page.get_by_test_id("generate")).to_have_text("Generate")
    expect(page.get_by_test_id("model-meta")).to_contain_text("transformer language model")
    max_tokens = page.get_by_test_id("opt-max-tokens")
    expect(max_tokens).to_be_visible()
    expect(max_tokens).to_have_value("8")  # the model's decode section: max_len_a 0, max_len_b 8
    expect(max_tokens).to_have_attribute("max", "1022")
    expect(page.get_by_test_id("opt-beam")).to_be_visible()
    assert tab.errors == []


def test_continuations_are_the_translators_with_the_prompt_set_apart(open_page, model_dirs):
    tab = open_page("lm")
    page, prompts = tab.page, ["b c", "d", "a b c d a"]
    page.get_by_test_id("opt-max-tokens").fill("3")
    with page.expect_request("**/v1/generate") as request:
        run(tab, "generate", prompts, "generation")
    assert request.value.post_data_json == {
        "prompts": prompts,
        "sampling": False,
        "beam": 1,
        "n_best": 1,
        "max_tokens": 3,
    }
    expected = Translator.load(model_dirs["lm"]).translate_nbest(prompts, max_len_a=0, max_len_b=3)
    shown = shown_generations(tab)
    assert [p + c for p, c in shown] == [nbest[0].text for nbest in expected]
    assert [p for p, _ in shown] == prompts
    assert all(len(c.split()) == 3 for _, c in shown)
    scores = [float(s) for s in page.get_by_test_id("generation-score").all_text_contents()]
    assert scores == pytest.approx([nbest[0].score for nbest in expected], abs=1e-3)
    style = "e => [getComputedStyle(e).color, getComputedStyle(e).fontWeight, getComputedStyle(e).backgroundColor]"
    prompt_style = page.get_by_test_id("generation-prompt").first.evaluate(style)
    continuation_style = page.get_by_test_id("generation-continuation").first.evaluate(style)
    assert prompt_style != continuation_style and all(
        a != b for a, b in zip(prompt_style, continuation_style)
    )
    assert tab.errors == []


def test_beam_n_best_and_seeded_sampling_reach_the_server(open_page, model_dirs):
    tab = open_page("lm")
    page, generator = tab.page, Translator.load(model_dirs["lm"])
    page.get_by_test_id("opt-beam").fill("3")
    page.get_by_test_id("opt-n-best").fill("2")
    run(tab, "generate", ["c", "a b"], "generation")
    expected = generator.translate_nbest(["c", "a b"], beam=3, n_best=2)
    assert [p + c for p, c in shown_generations(tab)] == [nbest[0].text for nbest in expected]
    alternatives = page.get_by_test_id("nbest").all_text_contents()
    assert alternatives == [f"{nbest[1].text}{nbest[1].score:.3f}" for nbest in expected]

    page.get_by_test_id("opt-sampling").check()
    for name, value in {"temperature": "3", "seed": "7", "max-tokens": "5"}.items():
        page.get_by_test_id(f"opt-{name}").fill(value)
    run(tab, "generate", ["a"] * 3, "generation")
    options = {"sampling": True, "temperature": 3.0, "seed": 7, "max_len_a": 0, "max_len_b": 5}
    first = [p + c for p, c in shown_generations(tab)]
    assert first == generator.translate(["a"] * 3, **options)
    assert len(set(first)) > 1  # temperature 3: the three draws differ
    run(tab, "generate", ["a"] * 3, "generation")
    assert [p + c for p, c in shown_generations(tab)] == first  # the same seed, the same draws
    assert tab.errors == []


def test_an_empty_box_generates_from_nothing(open_page, model_dirs):
    tab = open_page("lm")
    run(tab, "generate", [], "generation")
    expected = Translator.load(model_dirs["lm"]).translate([""])
    assert shown_generations(tab) == [("", expected[0])]
    assert tab.errors == []


def test_a_prompt_goes_into_the_page_as_text(open_page):
    tab = open_page("lm")
    tab.page.get_by_test_id("opt-max-tokens").fill("2")
    run(tab, "generate", [HOSTILE], "generation")
    ((prompt, continuation),) = shown_generations(tab)
    assert "<unk>" in prompt and len(continuation.split()) == 2  # the word model knows none of it
    assert tab.page.locator("#outputs img, #outputs b").count() == 0
    assert tab.page.evaluate("window.hacked") is None
    assert tab.errors == []
