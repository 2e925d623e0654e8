"""%%chat and ChatPanel in a real browser: JupyterLab 4 and Notebook 7, started by the tests on
127.0.0.1, in Debian's Chromium driven by Playwright. Cells are run with the keyboard and
buttons clicked with the mouse, as a user does.

These tests never skip in CI (CI=true): a missing browser fails them. Elsewhere they skip, saying
why. A failed test leaves a screenshot in test-artifacts/screenshots/ and the servers' logs in
test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RAN,
    JupyterApp,
    Notebook,
    chromium_missing,
    in_ci,
    screenshot_path,
)
from conftest import ended, ended_since, user_env
from kernel_stacks import STACKS, jupyter_data, kernel_name
from playwright.sync_api import Browser, Locator, Page, expect

from jupyter_stream.server import BackgroundServer, ServerConfig

WAIT = 30_000  # ms: a guard against hangs (starting a kernel, a whole reply), not a timing test
pytestmark = pytest.mark.timeout(180)
expect.set_options(timeout=WAIT)
LONG = "--max-tokens 20000"  # a reply that would take many minutes: it must be stopped


@pytest.fixture(scope="module")
def paced() -> Iterator[BackgroundServer]:
    """The demo model at 20 tokens/s: a reply grows visibly for as long as a test needs."""
    with BackgroundServer(ServerConfig(tokens_per_second=20, first_token_delay=0)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = chromium_missing()
    if reason is not None:
        if in_ci():
            pytest.fail(f"the browser tests must run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def start_app(
    app: str, name: str, paced: BackgroundServer, tmp_path_factory: pytest.TempPathFactory
) -> JupyterApp:
    env = user_env(JUPYTER_STREAM_BASE_URL=paced.base_url, JUPYTER_STREAM_MODEL="demo")
    return JupyterApp(app, tmp_path_factory.mktemp(name), env, name)


@pytest.fixture(scope="module")
def lab(
    browser: Browser, paced: BackgroundServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterApp]:
    app = start_app("jupyterlab", "jupyterlab", paced, tmp_path_factory)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def notebook7(
    browser: Browser, paced: BackgroundServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterApp]:
    app = start_app("notebook", "notebook7", paced, tmp_path_factory)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def kaggle_lab(
    browser: Browser, paced: BackgroundServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterApp]:
    """JupyterLab with the Kaggle-pinned stack's kernelspec alone: the Lab's own front ends
    (anywidget 0.11) show the widgets of the kernel's anywidget 0.9.21, which ask for a range of
    front-end versions, not "~0.9.*" (a Lab and a kernel from different environments)."""
    data = tmp_path_factory.mktemp("kaggle-data")
    (data / "kernels").symlink_to(jupyter_data(STACKS["kaggle"]) / "kernels")
    env = user_env(
        JUPYTER_STREAM_BASE_URL=paced.base_url, JUPYTER_STREAM_MODEL="demo", JUPYTER_PATH=str(data)
    )
    app = JupyterApp("jupyterlab", tmp_path_factory.mktemp("kaggle"), env, "kaggle-lab")
    yield app
    app.stop()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(WAIT)
    page = context.new_page()
    try:
        yield page
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            path = screenshot_path(request.node.nodeid)
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
    finally:
        context.close()
        for name in ("lab", "notebook7", "kaggle_lab"):
            if name in request.fixturenames:
                request.getfixturevalue(name).shutdown_kernels()


# -- driving a notebook ---------------------------------------------------------------------------


def text_length(locator: Locator) -> int:
    return int(locator.evaluate("node => node.textContent.length"))


def watch_growth(page: Page, answer: Locator, observations: int) -> list[int]:
    """Wait for ``answer`` to grow ``observations`` times; its lengths, as seen."""
    lengths = [text_length(answer)]
    for _ in range(observations):
        page.wait_for_function(
            "([node, seen]) => node.textContent.length > seen",
            arg=[answer.element_handle(), lengths[-1]],
        )
        lengths.append(text_length(answer))
    return lengths


# -- the tests ------------------------------------------------------------------------------------


def test_a_reply_grows_while_it_streams_then_stop_ends_it_within_a_second(
    page: Page, lab: JupyterApp, paced: BackgroundServer
) -> None:
    notebook = Notebook(
        page, lab, "stop.ipynb", ["%load_ext jupyter_stream", f"%%chat {LONG}\nExplain SSE."]
    )
    notebook.run_and_wait(0)
    cell = notebook.run(1)
    answer = cell.locator(".jupyter-stream-answer")
    stop = cell.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled()

    lengths = watch_growth(page, answer, 3)
    assert lengths == sorted(set(lengths)), lengths  # grew at each of three observations
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")  # still streaming

    before = len(ended(paced))
    stop.click()
    # The bound: growth stops and the status says so within one second of the click.
    status = cell.locator(".jupyter-stream-status")
    expect(status).to_contain_text("stopped by the user", timeout=1_000)
    expect(cell.locator(".jp-InputPrompt")).to_have_text(RAN)
    reply = cell.locator(".jupyter-stream-reply")  # the final output took the widget's place
    expect(reply).to_contain_text("Explain SSE")
    assert text_length(reply) >= lengths[-1]
    expect(cell.locator(".jupyter-stream-answer")).to_have_count(0)

    log = ended_since(paced, before)
    assert [entry["end"] for entry in log] == ["client disconnected"], log
    assert 0 < log[0]["tokens"] < 20_000


def test_a_reply_over_anthropics_messages_api_streams_and_stop_ends_it(
    page: Page, lab: JupyterApp, paced: BackgroundServer
) -> None:
    host = paced.base_url.removesuffix("/v1")  # Anthropic's base URL is the host, as its SDK's
    notebook = Notebook(
        page,
        lab,
        "anthropic.ipynb",
        ["%load_ext jupyter_stream", f"%%chat --api anthropic --base-url {host} {LONG}\nHi SSE."],
    )
    notebook.run_and_wait(0)
    cell = notebook.run(1)
    answer = cell.locator(".jupyter-stream-answer")
    lengths = watch_growth(page, answer, 3)
    assert lengths == sorted(set(lengths)), lengths
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")  # still streaming
    state = paced.app.state.server
    with state.changed:  # the API the server reads from the request's path and headers
        assert {exchange.api for exchange in state.exchanges} == {"anthropic"}

    before = len(ended(paced))
    cell.get_by_role("button", name="Stop").click()
    expect(cell.locator(".jupyter-stream-status")).to_contain_text("stopped by the user")
    expect(cell.locator(".jp-InputPrompt")).to_have_text(RAN)
    reply = cell.locator(".jupyter-stream-reply")
    expect(reply).to_contain_text("Hi SSE")
    assert text_length(reply) >= lengths[-1]
    log = ended_since(paced, before)
    assert [entry["end"] for entry in log] == ["client disconnected"], log
    assert 0 < log[0]["tokens"] < 20_000


def test_the_slider_at_two_seconds_ends_the_reply_with_timeout(page: Page, lab: JupyterApp) -> None:
    notebook = Notebook(
        page, lab, "slider.ipynb", ["%load_ext jupyter_stream", f"%%chat {LONG}\nA long one."]
    )
    notebook.run_and_wait(0)
    cell = notebook.run(1)
    expect(cell.locator(".jupyter-stream-answer")).not_to_be_empty()
    readout = cell.locator(".widget-readout")
    expect(readout).to_have_text("120")
    readout.fill("2")
    readout.press("Enter")
    expect(cell.locator(".jupyter-stream-status")).to_contain_text("stopped: the time limit passed")
    expect(cell.locator(".jupyter-stream-status")).to_contain_text("timeout")
    expect(cell.locator(".jp-InputPrompt")).to_have_text(RAN)


def test_chat_panel_send_and_stop(page: Page, lab: JupyterApp, paced: BackgroundServer) -> None:
    send_and_stop_in_a_panel(page, lab, paced)


def test_notebook_7_chat_panel_send_and_stop(
    page: Page, notebook7: JupyterApp, paced: BackgroundServer
) -> None:
    send_and_stop_in_a_panel(page, notebook7, paced)


def send_and_stop_in_a_panel(page: Page, app: JupyterApp, paced: BackgroundServer) -> None:
    notebook = Notebook(
        page,
        app,
        "panel.ipynb",
        ["from jupyter_stream import ChatPanel\npanel = ChatPanel(max_tokens=20000)\npanel"],
    )
    cell = notebook.run_and_wait(0)
    prompt = cell.locator("textarea.jupyter-stream-prompt")
    send = cell.get_by_role("button", name="Send")
    stop = cell.get_by_role("button", name="Stop")
    expect(stop).to_be_disabled()

    prompt.fill("What is a token?")
    send.click()
    answer = cell.locator(".jupyter-stream-answer")
    expect(cell.get_by_text("You: What is a token?")).to_be_visible()
    watch_growth(page, answer, 3)
    expect(stop).to_be_enabled()
    before = len(ended(paced))
    stop.click()
    expect(cell.get_by_text("stopped by the user").first).to_be_visible()
    expect(stop).to_be_disabled()
    log = ended_since(paced, before)
    assert [entry["end"] for entry in log] == ["client disconnected"], log

    # Typed key by key, the text is text (no "a" inserting a cell, no "b", no "d, d"), and
    # Shift+Enter in the prompt box sends; it does not run the cell, as it would elsewhere.
    prompt.press_sequentially("And a second question?")
    expect(prompt).to_have_value("And a second question?")
    prompt.press("Shift+Enter")
    expect(cell.get_by_text("You: And a second question?")).to_be_visible()
    expect(prompt).to_have_value("")
    watch_growth(page, answer.nth(1), 1)
    stop.click()
    expect(cell.get_by_text("stopped by the user")).to_have_count(2)
    expect(notebook.cells).to_have_count(1)  # Shift+Enter did not move on or add a cell


def test_the_reply_survives_save_kernel_shutdown_and_reload(page: Page, lab: JupyterApp) -> None:
    notebook = Notebook(
        page,
        lab,
        "saved.ipynb",
        ["%load_ext jupyter_stream", "%%chat --max-tokens 40\nKeep me.", "print('after')"],
    )
    notebook.run_and_wait(0)
    notebook.run_and_wait(1)
    notebook.run_and_wait(2)
    reply = notebook.cell(1).locator(".jupyter-stream-reply")
    expect(reply).to_contain_text("Keep me")
    shown = reply.inner_text()

    with page.expect_response(
        lambda response: (
            response.request.method == "PUT" and "/api/contents/saved.ipynb" in response.url
        )
    ) as saved:
        page.keyboard.press("Control+s")
    assert saved.value.ok
    assert "Keep me" in notebook.path.read_text()
    lab.shutdown_kernels()
    page.reload()
    expect(notebook.cells).to_have_count(3)
    reply = notebook.cell(1).locator(".jupyter-stream-reply")
    expect(reply).to_have_text(shown)
    expect(notebook.cell(1).locator(".jupyter-stream-status")).to_contain_text("40 tokens")
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    assert "widget-view" not in notebook.path.read_text()


def test_notebook_7_streams_and_stops(
    page: Page, notebook7: JupyterApp, paced: BackgroundServer
) -> None:
    notebook = Notebook(
        page,
        notebook7,
        "nb7.ipynb",
        ["%load_ext jupyter_stream", f"%%chat {LONG}\nHello from Notebook 7."],
    )
    notebook.run_and_wait(0)
    cell = notebook.run(1)
    answer = cell.locator(".jupyter-stream-answer")
    lengths = watch_growth(page, answer, 3)
    assert lengths == sorted(set(lengths)), lengths
    before = len(ended(paced))
    cell.get_by_role("button", name="Stop").click()
    expect(cell.locator(".jupyter-stream-status")).to_contain_text("stopped by the user")
    expect(cell.locator(".jupyter-stream-reply")).to_contain_text("Hello from Notebook")
    log = ended_since(paced, before)
    assert [entry["end"] for entry in log] == ["client disconnected"], log


def test_html_in_a_reply_is_shown_as_text_and_never_runs(page: Page, lab: JupyterApp) -> None:
    attack = (
        '<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script> '
        "[x](javascript:window.pwned=3)"
    )
    notebook = Notebook(
        page, lab, "echo.ipynb", ["%load_ext jupyter_stream", f"%%chat -m echo\n{attack}"]
    )
    notebook.run_and_wait(0)
    cell = notebook.run_and_wait(1)
    reply = cell.locator(".jupyter-stream-reply")
    expect(reply).to_contain_text('<img src=x onerror="window.pwned=1">')
    expect(reply).to_contain_text("<script>window.pwned=2</script>")
    expect(cell.locator(".jp-OutputArea img, .jp-OutputArea script")).to_have_count(0)
    expect(cell.locator(".jp-OutputArea a[href^='javascript']")).to_have_count(0)
    expect(reply).to_contain_text("[x](javascript:window.pwned=3)")  # a refused link stays text
    reply.get_by_role("paragraph").click()
    assert page.evaluate("window.pwned") is None


def test_on_a_kaggle_pinned_kernel_stop_acts_mid_cell_and_the_reply_survives_reload(
    page: Page, kaggle_lab: JupyterApp, paced: BackgroundServer
) -> None:
    """ipykernel 6.17.1, IPython 7.34, ipywidgets 8.1.5: the kernel holds comm messages until
    a cell ends, yet a Stop click acts while the %%chat cell is still running."""
    versions = (
        "import importlib.metadata as m\n"
        "print(*(m.version(n) for n in ('ipykernel', 'ipython', 'ipywidgets', 'anywidget')))\n"
        "%load_ext jupyter_stream"
    )
    notebook = Notebook(
        page,
        kaggle_lab,
        "kaggle.ipynb",
        [versions, f"%%chat {LONG}\nExplain SSE.", "print('after')"],
        kernel=kernel_name(STACKS["kaggle"]),
    )
    first = notebook.run_and_wait(0)
    expect(first.locator(".jp-OutputArea-output")).to_have_text("6.17.1 7.34.0 8.1.5 0.9.21")
    cell = notebook.run(1)
    answer = cell.locator(".jupyter-stream-answer")
    lengths = watch_growth(page, answer, 3)
    assert lengths == sorted(set(lengths)), lengths
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")  # the cell is still running

    before = len(ended(paced))
    cell.get_by_role("button", name="Stop").click()
    # The bound: growth stops and the status says so within one second of the click.
    expect(cell.locator(".jupyter-stream-status")).to_contain_text(
        "stopped by the user", timeout=1_000
    )
    log = ended_since(paced, before)
    assert [entry["end"] for entry in log] == ["client disconnected"], log
    assert 0 < log[0]["tokens"] < 20_000
    expect(cell.locator(".jp-InputPrompt")).to_have_text(RAN)
    reply = cell.locator(".jupyter-stream-reply")
    expect(reply).to_contain_text("Explain SSE")
    shown = reply.inner_text()
    notebook.run_and_wait(2)
    expect(notebook.cell(2).locator(".jp-OutputArea-output")).to_have_text("after")

    with page.expect_response(
        lambda response: (
            response.request.method == "PUT" and "/api/contents/kaggle.ipynb" in response.url
        )
    ) as saved:
        page.keyboard.press("Control+s")
    assert saved.value.ok
    kaggle_lab.shutdown_kernels()
    page.reload()
    expect(notebook.cells).to_have_count(3)
    reply = notebook.cell(1).locator(".jupyter-stream-reply")
    expect(reply).to_have_text(shown)
    expect(notebook.cell(1).locator(".jupyter-stream-status")).to_contain_text(
        "stopped by the user"
    )
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    assert "widget-view" not in notebook.path.read_text()
