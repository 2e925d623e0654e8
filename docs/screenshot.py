"""Take the README's screenshot of a %%chat cell while its reply streams.

    python docs/screenshot.py        # writes docs/streaming-cell.png

JupyterLab and Debian's Chromium, as in the browser tests (tests/browser_harness.py), against
our server's demo model at 20 tokens/s. The picture is taken once the reply has grown to about
600 characters, and the reply is then stopped.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from browser_harness import CHROMIUM, CHROMIUM_ARGS, JupyterApp, Notebook  # noqa: E402
from conftest import user_env  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from jupyter_stream.server import BackgroundServer, ServerConfig  # noqa: E402

PROMPT = "Explain server-sent events to a new colleague."


def main() -> None:
    expect.set_options(timeout=30_000)  # starting JupyterLab and a kernel: a guard, not a test
    out = HERE / "streaming-cell.png"
    with (
        tempfile.TemporaryDirectory() as tmp,
        BackgroundServer(ServerConfig(tokens_per_second=20, first_token_delay=0)) as server,
    ):
        root = Path(tmp) / "root"
        root.mkdir()
        env = user_env(JUPYTER_STREAM_BASE_URL=server.base_url, JUPYTER_STREAM_MODEL="demo")
        app = JupyterApp("jupyterlab", root, env, "screenshot")
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 640})
                notebook = Notebook(
                    page, app, "chat.ipynb", ["%load_ext jupyter_stream", f"%%chat\n{PROMPT}"]
                )
                notebook.run_and_wait(0)
                cell = notebook.run(1)
                answer = cell.locator(".jupyter-stream-answer")
                page.wait_for_function(
                    "node => node.textContent.length > 600", arg=answer.element_handle()
                )
                stop = cell.get_by_role("button", name="Stop")
                stop.hover()
                page.locator(".jp-NotebookPanel:visible").screenshot(path=str(out))
                stop.click()
                expect(cell.locator(".jupyter-stream-status")).to_contain_text("stopped")
                browser.close()
        finally:
            app.stop()
    print(out)


if __name__ == "__main__":
    main()
