"""The web page of `dragoman serve` in a real browser: headless Chromium, driven by Playwright, against a
live server (uvicorn on a background thread) with tiny trained models: a Transformer (2 layers,
2 heads), an LSTM with Bahdanau attention and a GRU without attention. What the page shows is
checked against the Translator itself."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from conftest import tiny_config, write_copy_task
from dragoman.config import parse_config
from dragoman.server import ServerSettings, create_app
from dragoman.train import train
from dragoman.translator import Translator

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (no /usr/bin/chromium, no chromium on PATH)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
expect = sync_api.expect

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_TEXTS = 3  # the Transformer's server is started with this limit, to see the page report it
LINES = ["a b c d", "h g f e", "b"]
MODELS = {
    "tiny-transformer": {"encoder": "transformer", "decoder": "transformer", "heads": 2, "ff": 64},
    "tiny-lstm": {"encoder": "lstm", "decoder": "lstm", "attention": "bahdanau", "hidden": 32},
    "tiny-gru": {"encoder": "gru", "decoder": "gru", "attention": "none", "hidden": 32},
}


# --- models, servers, browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name → model directory; each model is trained (a few seconds) the first time it is asked for."""
    root = tmp_path_factory.mktemp("web")
    data = write_copy_task(root / "data", n_train=400, n_dev=30)
    dirs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in dirs:
            model = {"enc_layers": 2, "dec_layers": 2, **MODELS[name]}
            train_section = {"max_steps": 60, "validate_every": 60, "log_every": 20, "dev_sentences": 10}
            config = {"name": name, **tiny_config(data, root / name, model, **train_section)}
            dirs[name] = train(parse_config(config))
        return dirs[name]

    return get


@pytest.fixture(scope="module")
def serve(trained):
    """name → the URL of a live server for that model (one per model, started on first use)."""
    servers: dict[str, tuple[uvicorn.Server, threading.Thread, str]] = {}

    def get(name: str) -> str:
        if name not in servers:
            settings = ServerSettings(max_texts=MAX_TEXTS)
            app = create_app(Translator.load(trained(name)), settings)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))  # a free port, held from now on: no race with other tests
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.02)
            servers[name] = (server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}/")
        return servers[name][2]

    yield get
    for server, thread, _ in servers.values():
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Tab:
    page: object  # playwright.sync_api.Page
    errors: list[str]  # console messages of type error and uncaught exceptions, in order


def tabs(browser, url_of):
    """A generator for a fixture: key → a fresh browser tab on the page at `url_of(key)`, loaded and
    ready, recording its console errors; the tabs close when the test ends."""
    contexts = []

    def get(key: str) -> Tab:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        tab = Tab(page, [])
        page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        page.goto(url_of(key))
        page.wait_for_selector("body[data-ready=true]")
        return tab

    yield get
    for context in contexts:
        context.close()


@pytest.fixture
def open_page(browser, serve):
    """name → a fresh browser tab on that model's page, loaded and ready."""
    yield from tabs(browser, serve)


def translate(tab: Tab, lines: list[str]) -> None:
    tab.page.get_by_test_id("input").fill("\n".join(lines))
    tab.page.get_by_test_id("translate").click()
    expect(tab.page.get_by_test_id("output")).to_have_count(len(lines))


def shown_heatmap(tab: Tab) -> tuple[list[str], list[str], np.ndarray]:
    """Row labels, column labels and the (rows, columns) weights of the heatmap on the page."""
    page = tab.page
    rows = page.get_by_test_id("row-label").all_text_contents()
    cols = page.get_by_test_id("col-label").all_text_contents()
    cells = page.eval_on_selector_all(
        "[data-testid=cell]", "cells => cells.map(c => [+c.dataset.row, +c.dataset.col, +c.dataset.weight])"
    )
    weights = np.full((len(rows), len(cols)), np.nan)
    for r, c, w in cells:
        weights[int(r), int(c)] = w
    assert len(cells) == len(rows) * len(cols) and not np.isnan(weights).any()
    return rows, cols, weights


def show_line(tab: Tab, index: int) -> None:
    tab.page.get_by_test_id("output").nth(index).click()
    expect(tab.page.get_by_test_id("attention-pair")).to_contain_text(f"Line {index + 1}:")


# --- the tests -------------------------------------------------------------------------------------


def test_page_shows_the_model(open_page):
    tab = open_page("tiny-transformer")
    expect(tab.page.get_by_test_id("model-name")).to_have_text("tiny-transformer")
    expect(tab.page.get_by_test_id("model-meta")).to_contain_text("transformer")
    assert tab.page.title() == "tiny-transformer · dragoman"
    assert tab.errors == []


def test_outputs_are_the_translators(open_page, trained):
    tab = open_page("tiny-transformer")
    translate(tab, LINES)
    expected = Translator.load(trained("tiny-transformer")).translate_nbest(LINES)
    page = tab.page
    assert page.get_by_test_id("output-source").all_text_contents() == LINES
    assert page.get_by_test_id("output-text").all_text_contents() == [nbest[0].text for nbest in expected]
    scores = [float(s) for s in page.get_by_test_id("output-score").all_text_contents()]
    assert scores == pytest.approx([nbest[0].score for nbest in expected], abs=1e-3)
    assert tab.errors == []


def test_ctrl_enter_translates(open_page, trained):
    tab = open_page("tiny-transformer")
    tab.page.get_by_test_id("input").fill("h g\n\n  c d  \n")  # blank lines skipped, ends trimmed
    tab.page.get_by_test_id("input").press("Control+Enter")
    expect(tab.page.get_by_test_id("output")).to_have_count(2)
    expected = Translator.load(trained("tiny-transformer")).translate(["h g", "c d"])
    assert tab.page.get_by_test_id("output-text").all_text_contents() == expected
    assert tab.errors == []


def test_decoding_options_reach_the_server(open_page, trained):
    tab = open_page("tiny-transformer")
    page, translator = tab.page, Translator.load(trained("tiny-transformer"))
    page.get_by_test_id("opt-beam").fill("3")
    page.get_by_test_id("opt-n-best").fill("2")
    translate(tab, LINES[:2])
    expected = translator.translate_nbest(LINES[:2], beam=3, n_best=2)
    assert page.get_by_test_id("output-text").all_text_contents() == [nbest[0].text for nbest in expected]
    alternatives = page.get_by_test_id("nbest").all_text_contents()
    assert alternatives == [f"{nbest[1].text}{nbest[1].score:.3f}" for nbest in expected]

    page.get_by_test_id("opt-sampling").check()
    expect(page.get_by_test_id("opt-beam")).to_be_disabled()
    for name, value in {"temperature": "1.5", "top-k": "5", "top-p": "0.9", "seed": "7"}.items():
        page.get_by_test_id(f"opt-{name}").fill(value)
    with page.expect_request("**/v1/translate") as request:
        translate(tab, LINES[1:2])
    options = {"sampling": True, "temperature": 1.5, "top_k": 5, "top_p": 0.9, "seed": 7}
    assert request.value.post_data_json == {"texts": LINES[1:2], **options}
    assert page.get_by_test_id("output-text").all_text_contents() == translator.translate(
        LINES[1:2], **options
    )
    assert tab.errors == []


def test_heatmap_is_the_selected_lines_attention(open_page, trained):
    tab = open_page("tiny-transformer")
    translate(tab, LINES)
    expect(tab.page.get_by_test_id("attention-pair")).to_contain_text("Line 1:")  # the first, unasked
    show_line(tab, 1)
    alignment = Translator.load(trained("tiny-transformer")).align(LINES[1])
    assert alignment.weights.shape[:2] == (2, 2)
    rows, cols, weights = shown_heatmap(tab)
    assert rows == alignment.target and rows[-1] == "</s>"
    assert cols == alignment.source == LINES[1].split()
    np.testing.assert_allclose(weights, alignment.weights.mean(axis=(0, 1)), atol=1e-3)  # default: average
    cell = tab.page.locator("[data-testid=cell][data-row='0'][data-col='1']")
    cell.hover()
    expected = f"{rows[0]} → {cols[1]}: {alignment.weights.mean(axis=(0, 1))[0, 1]:.4f}"
    expect(tab.page.get_by_test_id("readout")).to_have_text(expected)
    assert tab.errors == []


def test_layer_and_head_choose_the_cells(open_page, trained):
    tab = open_page("tiny-transformer")
    translate(tab, LINES[:1])
    alignment = Translator.load(trained("tiny-transformer")).align(LINES[0])
    shown = {}
    for layer, head in [(0, 0), (1, 1), (1, "average")]:  # the page counts layers and heads from 1
        tab.page.get_by_test_id("layer").select_option(value=str(layer + 1))
        tab.page.get_by_test_id("head").select_option(value="average" if head == "average" else str(head + 1))
        shown[layer, head] = weights = shown_heatmap(tab)[2]
        expected = (
            alignment.weights[layer].mean(axis=0) if head == "average" else alignment.weights[layer, head]
        )
        np.testing.assert_allclose(weights, expected, atol=1e-3)
    assert not np.allclose(shown[0, 0], shown[1, 1], atol=1e-3)  # the switch changed what is drawn
    assert tab.errors == []


def test_over_limit_request_shows_the_servers_message(open_page):
    tab = open_page("tiny-transformer")
    tab.page.get_by_test_id("input").fill("\n".join(["a"] * (MAX_TEXTS + 1)))
    tab.page.get_by_test_id("translate").click()
    error = tab.page.get_by_test_id("error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"{MAX_TEXTS + 1} texts; at most {MAX_TEXTS} per request")
    expect(error).to_have_attribute("data-limit", "max_texts")
    expect(tab.page.get_by_test_id("output")).to_have_count(0)
    # Chromium logs the refused request itself ("Failed to load resource: … 413"); nothing else.
    assert [e for e in tab.errors if "status of 413" not in e] == []
    translate(tab, LINES[:MAX_TEXTS])  # within the limit again: the error box goes away
    expect(error).to_be_hidden()


def test_text_goes_into_the_page_as_text(open_page):
    tab = open_page("tiny-transformer")
    line = '<img src=x onerror="window.hacked=1"> & <b>a</b>'
    translate(tab, [line])
    expect(tab.page.get_by_test_id("output-source")).to_have_text(line)
    assert tab.page.locator("#outputs img, #outputs b, #attention-card img").count() == 0
    assert tab.page.evaluate("window.hacked") is None
    assert tab.errors == []


def test_rnn_attention_is_one_matrix(open_page, trained):
    tab = open_page("tiny-lstm")
    expect(tab.page.get_by_test_id("model-meta")).to_contain_text("lstm-lstm+bahdanau")
    translate(tab, LINES)
    show_line(tab, 2)
    show_line(tab, 0)
    alignment = Translator.load(trained("tiny-lstm")).align(LINES[0])
    assert alignment.weights.shape[:2] == (1, 1)
    rows, cols, weights = shown_heatmap(tab)
    assert (rows, cols) == (alignment.target, alignment.source)
    np.testing.assert_allclose(weights, alignment.weights[0, 0], atol=1e-3)
    expect(tab.page.get_by_test_id("layer")).to_be_hidden()  # nothing to choose from
    expect(tab.page.get_by_test_id("head")).to_be_hidden()
    assert tab.errors == []


def test_model_without_attention_shows_a_note(open_page, trained):
    tab = open_page("tiny-gru")
    translate(tab, LINES[:2])
    expected = Translator.load(trained("tiny-gru")).translate(LINES[:2])
    assert tab.page.get_by_test_id("output-text").all_text_contents() == expected
    expect(tab.page.get_by_test_id("attention-note")).to_contain_text("no attention")
    expect(tab.page.get_by_test_id("heatmap")).to_be_hidden()
    assert tab.page.get_by_test_id("cell").count() == 0
    assert tab.errors == []
