"""The kernel tests that matter where notebooks run, on each kernel stack of the matrix (Colab's
pins, Kaggle's, ipykernel 6.29.5, SageMaker's 7.3.0, the newest): each kernel runs in its own
virtual environment (tests/kernel_stacks.py), jupyter_client in this process acts as the frontend,
and our server on 127.0.0.1 sees every disconnect."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conftest import ENV_VARS, ended, ended_since
from kernel_harness import WAIT, Execution, Kernel, Message, comm_id_of, comm_opens
from kernel_stacks import STACKS, Stack, kernel_manager
from test_kernel import ANSI, LONG, WIDGET_VIEW, after_frames, demo_text

from jupyter_stream.server import BackgroundServer, ServerConfig

pytestmark = pytest.mark.timeout(300)  # the first test of a stack may make its environment


class StackKernel(Kernel):
    """The harness's kernel, started from a stack's environment."""

    def __init__(self, stack: Stack, env: dict[str, str]) -> None:
        self.manager = kernel_manager(stack)
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=WAIT)
        self._pending: dict[str, Execution] = {}
        self._aliases: dict[str, Execution] = {}


@pytest.fixture(scope="module")
def paced() -> Iterator[BackgroundServer]:
    """The demo model at 100 tokens/s: a reply spans many frames."""
    with BackgroundServer(ServerConfig(tokens_per_second=100, first_token_delay=0)) as server:
        yield server


def kernel_env(server: BackgroundServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return env | {"JUPYTER_STREAM_BASE_URL": server.base_url, "JUPYTER_STREAM_MODEL": "demo"}


@pytest.fixture(scope="module", params=list(STACKS))
def stack(request: pytest.FixtureRequest) -> Stack:
    return STACKS[request.param]


@pytest.fixture(scope="module")
def kernel(stack: Stack, paced: BackgroundServer) -> Iterator[Kernel]:
    kernel = StackKernel(stack, kernel_env(paced))
    try:
        kernel.ok("%load_ext jupyter_stream")
        yield kernel
    finally:
        kernel.shutdown()


@pytest.fixture(autouse=True)
def fresh_conversation(kernel: Kernel) -> None:
    kernel.ok("%chat reset all")


def test_the_stack_is_the_one_it_stands_for(kernel: Kernel, stack: Stack) -> None:
    """pip installed the project beside the pins without moving them."""
    said = kernel.ok(
        "import importlib.metadata as m\n"
        "print(' '.join(f'{n}=={m.version(n)}' for n in "
        "['ipykernel', 'ipython', 'ipywidgets', 'jupyter_client', 'anywidget', 'httpx']))"
    ).stdout()
    held = set(said.split())
    for pin in stack.pins:
        if "==" in pin:
            assert pin.replace("_", "-").lower() in {h.replace("_", "-").lower() for h in held}


def test_stop_clicked_mid_stream_stops_it_and_the_connection(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    before = len(ended(paced))
    execution = kernel.submit(f"%%chat {LONG}\nTell me everything.")

    def click(_message: Message) -> None:
        kernel.click(comm_id_of(execution, description="Stop"))

    kernel.wait(execution, after_frames(3, click))
    assert execution.status == "ok", kernel.error_of(execution)
    facts = execution.final["metadata"]["jupyter_stream"]
    assert facts["stop_reason"] == "stopped"
    assert 0 < facts["tokens"] < 20000
    plain = execution.final["data"]["text/plain"]
    assert plain.endswith("\n[stopped by the user]")
    assert plain.removesuffix("\n[stopped by the user]") == demo_text(
        "Tell me everything.", facts["tokens"]
    )
    assert "*[stopped by the user]*" in execution.final["data"]["text/markdown"]
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"


def test_the_slider_below_the_elapsed_time_ends_it_with_timeout(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    before = len(ended(paced))
    execution = kernel.submit(f"%%chat {LONG} --timeout 300\nTake your time.")

    def slide(_message: Message) -> None:
        kernel.set_state(comm_id_of(execution, description="Timeout (s)"), value=1.0)

    kernel.wait(execution, after_frames(2, slide))
    assert execution.status == "ok", kernel.error_of(execution)
    facts = execution.final["metadata"]["jupyter_stream"]
    assert facts["stop_reason"] == "timeout" and facts["tokens"] < 20000
    assert execution.final["data"]["text/plain"].endswith("[stopped: the time limit passed]")
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"


def test_interrupt_keeps_the_partial_reply(kernel: Kernel, paced: BackgroundServer) -> None:
    before = len(ended(paced))
    execution = kernel.submit(f"%%chat {LONG}\nKeep going.")
    kernel.wait(execution, after_frames(3, lambda _message: kernel.interrupt()))
    assert execution.status == "error"
    [error] = execution.of_type("error")
    assert error["content"]["ename"] == "KeyboardInterrupt"
    final = execution.final
    assert final["metadata"]["jupyter_stream"]["stop_reason"] == "interrupted"
    assert final["data"]["text/plain"].endswith("\n[interrupted]")
    assert len(final["data"]["text/plain"]) > len("\n[interrupted]")
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"
    alive = kernel.run("print('still alive')")
    if alive.status == "aborted":  # ipykernel 6 aborts a request that comes just after an error
        alive = kernel.run("print('still alive')")
    assert (alive.status, alive.stdout()) == ("ok", "still alive\n")


def test_run_all_keeps_the_order_of_cells_and_their_outputs(kernel: Kernel) -> None:
    first = kernel.submit("%%chat --max-tokens 40 -o first_reply\nOne.")
    second = kernel.submit("print('second cell')\n%chat history")
    third = kernel.submit("%%chat --max-tokens 30 -o third_reply\nThree.")
    fourth = kernel.submit("print(len(first_reply), len(third_reply))")
    kernel.wait(fourth)
    assert [e.status for e in (first, second, third, fourth)] == ["ok"] * 4
    assert second.stdout().startswith("second cell\n[1] you: One.")
    assert "Three." not in second.stdout()  # it ran before the third cell, not during the first
    one, three = demo_text("One.", 40), demo_text("Three.", 30)
    assert fourth.stdout() == f"{len(one)} {len(three)}\n"
    counts = [e.reply["content"]["execution_count"] for e in (first, second, third, fourth)]
    assert counts == sorted(counts)


def test_stop_mid_cell_with_cells_queued_behind_keeps_them_in_order(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    """A Run All: the click lands while two cells wait their turn; neither is lost or reordered,
    and neither's output is taken by the chat cell."""
    execution = kernel.submit(f"%%chat {LONG}\nStop me.")
    second = kernel.submit("print('two')")
    third = kernel.submit("print('three')")

    def click(_message: Message) -> None:
        kernel.click(comm_id_of(execution, description="Stop"))

    kernel.wait(execution, after_frames(3, click))
    kernel.wait(third)
    assert execution.status == "ok", kernel.error_of(execution)
    assert execution.final["metadata"]["jupyter_stream"]["stop_reason"] == "stopped"
    assert not execution.of_type("stream")
    assert (second.stdout(), third.stdout()) == ("two\n", "three\n")
    assert second.status == third.status == "ok"


def test_a_chat_error_shows_its_message(kernel: Kernel) -> None:
    run = kernel.run("%%chat -m no-such-model\nHi")
    assert run.status == "error"
    message = kernel.error_of(run)
    assert "no-such-model" in message and "%chat models" in message
    # Its message alone, no traceback through the package; %tb still shows the whole one.
    [error] = run.of_type("error")
    shown = ANSI.sub("", "\n".join(error["content"]["traceback"])).strip()
    assert shown == f"NotFoundError: {message}"
    [whole] = kernel.run("%tb").of_type("error")
    assert "jupyter_stream/_magic.py" in ANSI.sub("", "\n".join(whole["content"]["traceback"]))


def test_a_notebook_run_by_nbclient_holds_the_whole_reply(
    stack: Stack, paced: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", paced.base_url)
    monkeypatch.setenv("JUPYTER_STREAM_MODEL", "demo")
    cells = ["%load_ext jupyter_stream", "%%chat --max-tokens 60\nExplain streams.", "1 + 1"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    manager = kernel_manager(stack)
    client = NotebookClient(notebook, timeout=60, km=manager)
    try:
        client.execute()
    finally:  # nbclient closes only the kernels (and their clients) it made itself
        if client.kc is not None:
            client.kc.stop_channels()
        manager.shutdown_kernel(now=True)
    [output] = notebook.cells[1].outputs
    assert WIDGET_VIEW not in output.data
    assert output.data["text/plain"] == demo_text("Explain streams.", 60) + (
        "\n[cut at the token limit]"
    )
    assert notebook.cells[2].outputs[0].data["text/plain"] == "2"


def test_every_stack_of_the_matrix_acts_on_stop_mid_cell(kernel: Kernel) -> None:
    said = kernel.ok(
        "from jupyter_stream._kernel_compat import midcell_notice, supports_midcell_stop\n"
        "print(supports_midcell_stop(), midcell_notice())"
    ).stdout()
    assert said == "True None\n"


def test_where_stop_cannot_act_mid_cell_the_widgets_say_so_from_the_start(
    kernel: Kernel,
) -> None:
    """A kernel version nothing measured (here: one that claims to be 7.1.0)."""
    kernel.ok(
        "import jupyter_stream._kernel_compat as compat\n"
        "measured = compat.ipykernel_version\n"
        "compat.ipykernel_version = lambda: (7, 1, 0)"
    )
    try:
        run = kernel.run("%%chat --max-tokens 30\nHi.")
    finally:
        kernel.ok("compat.ipykernel_version = measured")
    assert run.status == "ok", kernel.error_of(run)
    notice = "Stop acts when this cell ends on ipykernel 7.1.0 — Kernel → Interrupt stops now"
    assert run.frames[0].get("s") == notice  # before the first token
    stop = comm_id_of(run, description="Stop")
    [state] = [s for comm_id, s in comm_opens(run) if comm_id == stop]
    assert state["tooltip"] == notice
    assert run.final["metadata"]["jupyter_stream"]["stop_reason"] == "length"


def test_unload_ext_gives_the_kernel_its_own_receive_callback_back(
    kernel: Kernel, stack: Stack, paced: BackgroundServer
) -> None:
    """After ``%unload_ext`` no wrapper of ours sits in the kernel's message path; after
    ``%load_ext`` again, Stop acts mid-cell again."""
    kernel.ok("%%chat --max-tokens 5\nWrap.")
    check = (
        "import jupyter_stream._kernel_compat as compat\n"
        "stream = compat._shell_stream(get_ipython().kernel)\n"
        "print(getattr(stream._recv_callback, '__qualname__', '').startswith('_wrap.'))"
    )
    wrapped = kernel.ok(check).stdout()
    native = stack.name == "newest"  # ipykernel >= 7.4: nothing is wrapped
    assert wrapped == f"{not native}\n"
    assert kernel.ok(f"%unload_ext jupyter_stream\n{check}").stdout() == "False\n"
    kernel.ok("%load_ext jupyter_stream")
    test_stop_clicked_mid_stream_stops_it_and_the_connection(kernel, paced)
