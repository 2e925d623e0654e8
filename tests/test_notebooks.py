"""The teaching notebooks in notebooks/: each is run top to bottom by nbclient, as a new user
would run it (no endpoint, no key, no network: the embedded demo server), and its key outputs
are checked. The notebooks run in a temporary directory, two at a time (they spend most of their
time waiting for the demo model's 30 tokens a second), and are never written back. What is
checked never depends on how fast the machine is: stop reasons and counts, not durations.

Each runs twice: on this environment's kernel (``python3``), and unchanged on a Colab-pinned kernel
(ipykernel 6.17.1, IPython 7.34, ipywidgets 7.7.1; tests/kernel_stacks.py) with the same checks."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import user_env
from kernel_stacks import STACKS, kernel_name, kernel_spec_manager

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01-quickstart",
    "02-chat-panel",
    "03-how-streaming-works",
    "04-interrupting-a-stream",
    "05-measuring",
    "06-policies",
    "07-wire-protocols",
]
CELL_TIMEOUT = 60  # seconds for one cell: a guard against hangs, never a timing assertion
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.timeout(240)

Notebook = Any  # nbformat.NotebookNode
Cell = Any


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


# -- the notebooks as they are kept -------------------------------------------------------------


def test_the_seven_notebooks_are_there() -> None:
    assert [path.stem for path in notebook_paths()] == EXPECTED


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda path: path.stem)
def test_a_notebook_is_kept_with_its_outputs_cleared(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.language_info.name == "python"
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "no title cell"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"outputs kept in {cell.source[:60]!r}"
            assert cell.execution_count is None, f"execution count in {cell.source[:60]!r}"


# -- running them -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["python3", "colab"])
def executed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Every notebook, executed on the kernel ``request.param``: the notebook with its outputs,
    or what went wrong."""
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    stack = STACKS.get(request.param)

    # As a new user: none of the endpoint variables (clean_env is function-scoped, and this
    # fixture is set up before it, so the kernels get their environment from here).
    env = user_env()
    # matplotlib builds its font cache once per machine, and says so on stderr if that is slow:
    # build it here, not in a notebook.
    import matplotlib.font_manager  # noqa: F401

    if stack is not None:
        spec_manager = kernel_spec_manager(stack)  # makes the stack's environment if need be
        font_cache = [str(stack.python), "-c", "import matplotlib.font_manager"]
        subprocess.run(font_cache, env=env, check=True, capture_output=True)

    running = asyncio.Semaphore(2)

    async def run(path: Path) -> Any:
        notebook = nbformat.read(path, as_version=4)
        cwd = tmp_path_factory.mktemp(path.stem)
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}},
        )
        manager = None
        if stack is not None:
            manager = AsyncKernelManager(
                kernel_name=kernel_name(stack), kernel_spec_manager=spec_manager
            )
            client.km = manager
            # As nbclient does for a kernel named python3: no history file shared between kernels.
            client.extra_arguments = ["--HistoryManager.hist_file=:memory:"]
        async with running:
            try:
                await client.async_execute(env=env)
            finally:  # nbclient shuts down only the kernels it made itself
                if manager is not None:
                    if client.kc is not None:
                        client.kc.stop_channels()
                    await manager.shutdown_kernel(now=True)
        return notebook

    async def run_all() -> list[Any]:
        paths = [NOTEBOOKS / f"{name}.ipynb" for name in EXPECTED]
        return await asyncio.gather(*(run(path) for path in paths), return_exceptions=True)

    results = asyncio.run(run_all())
    yield dict(zip(EXPECTED, results, strict=True))


def run(executed: dict[str, Any], name: str) -> Notebook:
    result = executed[name]
    if isinstance(result, BaseException):
        raise result
    check_errors(result)
    return result


def check_errors(notebook: Notebook) -> None:
    """Only the cells tagged ``raises-exception`` fail, and those do; nothing is written to
    stderr (a warning in a teaching notebook is a bug)."""
    for cell in code_cells(notebook):
        errors = [output for output in cell.outputs if output.output_type == "error"]
        said = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert not said, f"{cell.source[:60]!r} wrote to stderr: {''.join(said)[:500]}"
        if "raises-exception" in cell.metadata.get("tags", []):
            assert errors, f"a cell tagged raises-exception did not raise: {cell.source[:60]!r}"
        else:
            assert not errors, f"{cell.source[:60]!r} failed: {errors[0].ename}: {errors[0].evalue}"


def code_cells(notebook: Notebook) -> list[Cell]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def cell(notebook: Notebook, start: str) -> Cell:
    """The one code cell whose source starts with ``start``."""
    [found] = [c for c in code_cells(notebook) if c.source.startswith(start)]
    return found


def stdout(cell: Cell) -> str:
    return "".join(
        output.text
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def search(pattern: str, text: str) -> str:
    """The first group of ``pattern``'s first match in ``text``."""
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} not in {text!r}"
    return found[1]


def chat_output(cell: Cell) -> Any:
    """The output a %%chat cell leaves: one display, no widget."""
    [output] = cell.outputs
    assert output.output_type == "display_data"
    assert WIDGET_VIEW not in output.data
    return output


def test_01_quickstart(executed: dict[str, Any]) -> None:
    notebook = run(executed, "01-quickstart")
    chats = [c for c in code_cells(notebook) if c.source.startswith("%%chat")]
    facts = [chat_output(c).metadata["jupyter_stream"] for c in chats]
    assert [fact["stop_reason"] for fact in facts] == ["length", "timeout", "length", "completed"]
    assert [fact["model"] for fact in facts] == ["demo", "demo", "demo", "echo"]
    assert facts[0]["tokens"] == 60

    timed_out = facts[1]
    assert 0 < timed_out["tokens"] < 2000
    assert chat_output(chats[1]).data["text/plain"].endswith("\n[stopped: the time limit passed]")

    history = stdout(cell(notebook, "%chat history"))
    assert "[1] you: Explain server-sent events in one paragraph." in history
    assert "[2] you: Now write a long essay about rivers." in history
    assert "[stopped: the time limit passed]" in history
    assert "[3] you: Can you say that in one sentence?" in history
    assert "[4]" not in history

    [said] = cell(notebook, "said").outputs
    assert said.data["text/plain"] == "'Tell me about server-sent events, briefly.'"


def test_02_chat_panel(executed: dict[str, Any]) -> None:
    notebook = run(executed, "02-chat-panel")
    [shown] = cell(notebook, "from jupyter_stream import ChatPanel").outputs
    assert WIDGET_VIEW in shown.data

    stopped = stdout(cell(notebook, "import asyncio"))
    assert stopped.startswith("stop reason: stopped\n")
    tokens = int(search(r"^tokens: (\d+)$", stopped))
    assert tokens >= 20  # stopped once the status line had counted 20, before its end

    timed_out = stdout(cell(notebook, "panel.timeout_slider.value = 2"))
    assert re.fullmatch(r"stop reason: timeout, after \d+\.\d s\n", timed_out)

    echoed = stdout(cell(notebook, "print(panel.model_picker.options)"))
    assert echoed == (
        "('demo', 'echo')\nstop reason: completed, answer: 'Thank you, that is all for now.'\n"
    )

    turns = stdout(cell(notebook, "for turn in panel.session.turns")).splitlines()
    assert [line.split()[0] for line in turns] == ["stopped", "timeout", "completed"]

    messages = stdout(cell(notebook, "for message in panel.session.messages()")).splitlines()
    assert [line.split(":")[0].strip() for line in messages] == ["user", "assistant"] * 3


def test_03_how_streaming_works(executed: dict[str, Any]) -> None:
    notebook = run(executed, "03-how-streaming-works")
    raw = stdout(cell(notebook, "request = {"))
    assert raw.startswith("HTTP/1.1 200 OK\n")
    for header in (
        "content-type: text/event-stream; charset=utf-8",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "transfer-encoding: chunked",
    ):
        assert f"\n{header}\n" in raw
    assert '\nb\'data: {"id":' in raw
    assert raw.rstrip().endswith("data: [DONE]\\n\\n'")

    decoded = stdout(cell(notebook, "from jupyter_stream.sse import SSEDecoder"))
    assert decoded == (
        "ServerSentEvent(event='greeting', data='Hello,\\nworld!', id='1', retry=None)\n"
        "ServerSentEvent(event='message', data='an event with no id of its own keeps the last "
        "one', id='1', retry=None)\n"
        "ServerSentEvent(event='message', data='[DONE]', id='1', retry=None)\n"
        "retry: 3000 ms; last event id: '1'\n"
    )
    assert stdout(cell(notebook, "one_byte_at_a_time")) == "True\n"

    chunks = stdout(cell(notebook, "decoder = SSEDecoder()")).splitlines()
    assert chunks[0] == "delta {'role': 'assistant', 'content': ''}, finish_reason None"
    assert len([line for line in chunks if line.startswith("delta {'content'")]) == 6
    assert chunks[-3:] == [
        "delta {}, finish_reason length",
        "usage {'prompt_tokens': 14, 'completion_tokens': 6, 'total_tokens': 20}",
        "[DONE]",
    ]

    events = stdout(cell(notebook, "server_root =")).splitlines()
    assert [search(r"id='(\d+)'", line) for line in events] == ["0", "1", "2", "2"]
    assert events[-1] == "ServerSentEvent(event='done', data='[DONE]', id='2', retry=None)"
    resumed = stdout(cell(notebook, "show_events(headers=")).splitlines()
    assert resumed[0] == "ServerSentEvent(event='message', data='.', id='2', retry=None)"

    relayed = stdout(cell(notebook, "from jupyter_stream.server import BackgroundServer"))
    for header in (
        "content-type: text/event-stream; charset=utf-8",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "content-encoding: None",
    ):
        assert f"\n{header}\n" in relayed
    # Through the relay the tokens arrive one by one, spread over time, not all at the end.
    rows = re.findall(r"^\s*([\d.]+) ms\s+\d+ bytes\s+\[(.*)\]$", relayed, re.MULTILINE)
    tokens = [float(at) for at, said in rows if "(no text)" not in said and "(usage)" not in said]
    assert len(tokens) >= 2, relayed
    # 10 tokens paced at 30 tokens/s take 300 ms: a relay that held them would show no spread.
    assert tokens[-1] - tokens[0] >= 150, relayed
    assert rows[-1][1].endswith("'[DONE]'")

    assert stdout(cell(notebook, "start = time.perf_counter()")).endswith(" bytes, all at once\n")


def report(cell: Cell) -> tuple[str, int | None, int]:
    """The stop reason, deltas iterated and characters kept, as the notebook's report() says."""
    said = re.search(
        r"stop reason: (\w+); (?:(\d+) deltas iterated, )?(\d+) characters kept", stdout(cell)
    )
    assert said is not None, stdout(cell)
    deltas = int(said[2]) if said[2] is not None else None
    return said[1], deltas, int(said[3])


def test_04_interrupting_a_stream(executed: dict[str, Any]) -> None:
    notebook = run(executed, "04-interrupting-a-stream")
    reason, deltas, kept = report(
        cell(notebook, 'deltas = 0\nasync with astream_chat("Tell me about rivers')
    )
    assert (reason, deltas) == ("stopped", 15) and kept > 0
    assert stdout(cell(notebook, "stream.close()\nstream.close(")) == "stopped\n"

    lakes = cell(notebook, 'async with astream_chat("Tell me about lakes.')
    reason, _, kept = report(lakes)
    assert reason == "timeout" and kept > 0

    reason, deltas, kept = report(
        cell(notebook, 'deltas = 0\nasync with astream_chat("Tell me about seas')
    )
    assert (reason, deltas) == ("timeout", 10) and kept > 0

    cancelled = cell(notebook, 'stream = astream_chat("Tell me about glaciers.')
    assert stdout(cancelled).startswith("task cancelled: True\n")
    reason, _, kept = report(cancelled)
    assert reason == "interrupted" and kept > 0

    signalled = cell(notebook, "import os\nimport signal")
    [error] = [output for output in signalled.outputs if output.output_type == "error"]
    assert error.ename == "CancelledError"
    reason, deltas, kept = report(cell(notebook, "report(stream, deltas)"))
    assert reason == "interrupted" and deltas is not None and deltas >= 10 and kept > 0

    reason, deltas, kept = report(cell(notebook, "import threading"))
    assert reason == "stopped" and deltas is not None and 10 <= deltas < 300 and kept > 0

    failed = stdout(cell(notebook, "from jupyter_stream import JupyterStreamError"))
    assert failed.startswith("raised: NotFoundError\nstop reason: error\nstream.error: 404 ")
    assert "model 'no-such-model' not found" in failed


def test_05_measuring(executed: dict[str, Any]) -> None:
    notebook = run(executed, "05-measuring")
    assert "['demo', 'echo']" in stdout(cell(notebook, "%matplotlib inline"))

    measured = stdout(cell(notebook, "MAX_TOKENS = 90"))
    assert "stop reason:         stopped\n" in measured
    assert "deltas received:     45\n" in measured
    ttft = float(search(r"time to first token: ([\d.]+) s", measured))
    assert ttft >= 0.2  # the demo model's first token comes after 0.2 s
    assert float(search(r"tokens per second:\s+([\d.]+)", measured)) > 0

    [figure] = [o for o in cell(notebook, "first = arrivals[0]").outputs if "data" in o]
    assert figure.data["image/png"]


def streams_table(text: str) -> list[tuple[int, str, int]]:
    """The rows of a ``%chat streams`` table: number, state, priority (never the age)."""
    rows = re.findall(
        r"^\s*(\d+)\s+(streaming|waiting)\s+demo\s+[\d.]+ s\s+\d+\s+(-?\d+)\s+\S.*$",
        text,
        re.MULTILINE,
    )
    return [(int(number), state, int(priority)) for number, state, priority in rows]


def test_06_policies(executed: dict[str, Any]) -> None:
    notebook = run(executed, "06-policies")  # no errors, nothing on stderr

    # stop_on: moderated, the rule named, the match located, the text up to it kept.
    moderated = stdout(cell(notebook, "no_secrets = stop_on("))
    assert moderated.startswith(
        "stop reason: moderated\nstop detail: word 'API key' matched 'API key'\n"
    )
    start = int(search(r"^match: rule \"word 'API key'\", text 'API key', at \[(\d+):", moderated))
    end = int(search(r", at \[\d+:(\d+)\]$", moderated))
    assert end - start == len("API key")
    assert "\nthe answer there: 'API key'\n" in moderated
    assert int(search(r"^kept: (\d+) characters", moderated)) >= end

    chat = chat_output(cell(notebook, "%%chat --stop-on password"))
    facts = chat.metadata["jupyter_stream"]
    assert facts["stop_reason"] == "moderated"
    assert facts["stop_detail"] == "word 'password' matched 'password'"
    assert chat.data["text/plain"].endswith(
        "\n[stopped by a moderation rule: word 'password' matched 'password']"
    )

    # A function rule: a lambda, then a named one that gives its reason and counts its reads.
    lambda_rule = stdout(
        cell(notebook, 'async with astream_chat(\n    "Tell me about streaming.",\n')
    )
    assert lambda_rule.startswith("stop reason: moderated | rule <lambda>()\n")
    kept = search(r"^kept: '(.*)'$", lambda_rule)
    assert kept.lower().count("stream") >= 3  # the read that said it the third time, kept

    named = stdout(cell(notebook, "given = []"))
    assert named.startswith(
        "stop reason: moderated | rule says_stream_three_times(): it said 'stream' three times\n"
    )
    answer = int(search(r"^(\d+) characters of answer", named))
    calls = int(search(r"the rule was called (\d+) times", named))
    read = int(search(r"^and read (\d+) characters in all", named))
    assert calls >= 2 and read > answer  # it read the same text again and again

    # A stop sequence: completed, trimmed before it, nothing of it shown.
    trimmed = stdout(
        cell(notebook, 'async with astream_chat(\n    "Tell me about streaming.", max')
    )
    assert trimmed.startswith("stop reason: completed | stop sequence '## ' matched '## '\n")
    assert "\n'## ' shown: False\n" in trimmed
    assert trimmed.endswith("needed to write this.\\n\\n'\n")

    # ChatSession: superseded by default, the partial answer in the history; both run without.
    superseded = stdout(cell(notebook, "session = ChatSession()"))
    assert int(search(r"^first turn: superseded \((\d+) characters kept\)$", superseded)) > 0
    assert "\nsecond turn: length\n" in superseded
    sent = superseded.split("the second turn sent:\n")[1].splitlines()
    assert [line.split(":")[0].strip() for line in sent] == ["user", "assistant", "user"]

    both = stdout(cell(notebook, "side_by_side = ChatSession(supersede=False)"))
    assert both == (
        "running at once: 2\nfirst turn: length | second turn: length\n"
        "the second turn sent 1 message\n"
    )

    # The registry: two slots, preemption by priority, waiting, refusal, stop all.
    full = stdout(cell(notebook, 'registry.configure(max_concurrent=2, when_full="preempt")'))
    assert full.startswith(
        "<StreamRegistry 2 running, 0 waiting, max_concurrent=2, when_full='preempt'>\n"
    )
    essay, chores = (number for number, _, _ in streams_table(full))
    assert streams_table(full) == [(essay, "streaming", 1), (chores, "streaming", 0)]

    preempted = stdout(cell(notebook, "urgent = astream_chat("))
    urgent = int(
        search(r"^chores: preempted \| stream #(\d+) \(priority 5\) took its slot", preempted)
    )
    assert "took its slot (max_concurrent=2)\n" in preempted
    assert int(search(r"it keeps what it had: (\d+) characters", preempted)) > 0
    assert (
        "\nidle: preempted | all 2 slots (max_concurrent) are held by streams of higher priority "
        "than -1\n" in preempted
    )
    assert preempted.endswith(f"live: ['#{essay} priority 1', '#{urgent} priority 5']\n")

    waited = stdout(cell(notebook, "%chat limit 2 wait"))
    assert waited.startswith("at most 2 streams at once; a new one beyond that: wait\n")
    queued = int(search(r"^#(\d+) waiting: True$", waited))
    assert streams_table(waited) == [
        (essay, "streaming", 1),
        (urgent, "streaming", 5),
        (queued, "waiting", 3),
    ]
    assert "\nessay: stopped\n" in waited
    assert f"\n#{queued} waiting: False | its first delta: " in waited

    refused = stdout(cell(notebook, "%chat limit refuse"))
    assert refused.startswith(
        "at most 2 streams at once; a new one beyond that: refuse\n"
        "refused: StreamLimitError | stop reason: error\n"
        "stream.error is the exception: True\n"
        "2 streams are running, the limit (max_concurrent=2, when_full='refuse')."
    )

    stopped = stdout(cell(notebook, "%chat stop all"))
    assert stopped == (
        "stopped 2 streams\n"
        "urgent: stopped | queued: stopped\n"
        "live streams: 0 | <StreamRegistry 0 running, 0 waiting, no limit, when_full='preempt'>\n"
    )


def test_07_wire_protocols(executed: dict[str, Any]) -> None:
    notebook = run(executed, "07-wire-protocols")
    finish = {
        "chat": "length",
        "responses": "max_output_tokens",
        "anthropic": "max_tokens",
        "gemini": "MAX_TOKENS",
        "ollama": "length",
    }

    asked = stdout(cell(notebook, "answers = {}"))
    for api, word in finish.items():
        said = search(rf"^ *{api}: (\d+) deltas, length \('{word}'\), ", asked)
        assert int(said) > 1, asked  # streamed, not whole
    assert asked.endswith("the same answer over all five: True\n")

    raw = stdout(cell(notebook, "message = [{"))
    assert all(int(search(rf"^ *{api}: +(\d+) lines$", raw)) > 3 for api in finish), raw
    [table] = [o for o in cell(notebook, "def column(").outputs if "text/html" in o.get("data", {})]
    html = table.data["text/html"]
    assert "data: [DONE]" in html and "event: message_stop" in html and "finishReason" in html
    assert "event: response.incomplete" in html and "&quot;done&quot;:true" in html

    stopped = stdout(cell(notebook, "LONG = 300"))
    for api in finish:
        kept = search(
            rf"^ *{api}: stopped, (\d+) characters kept, 0 deltas after close\(\)$", stopped
        )
        assert int(kept) > 0, stopped
