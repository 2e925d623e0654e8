"""The README's commands and examples are the ones that work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_server import Request, Response, ScriptedServer, chunk

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    commands = [line for block in code_blocks("bash") for line in block.splitlines()]
    assert ci in commands


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_python_examples_run(
    index: int, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def story(request: Request, response: Response) -> None:
        for word in ["Once", " upon", " a", " time"]:
            await response.event(chunk(word))
        await response.event(chunk(finish_reason="stop"))
        await response.event("[DONE]")
        await response.end()

    server.handler = story
    env = {
        "JUPYTER_STREAM_BASE_URL": server.url,
        "JUPYTER_STREAM_MODEL": "test-model",
        "PATH": "/usr/bin:/bin",
    }
    code = code_blocks("python")[index].replace("threading.Timer(2.0,", "threading.Timer(0.0,")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
    if "asyncio.run" in code:
        assert "Once upon a time\n[completed] 4 tokens" in result.stdout


def test_the_first_command_streams_from_the_embedded_server_with_no_configuration() -> None:
    prefix = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
    [first] = [line for line in code_blocks("bash")[0].splitlines() if line.startswith(prefix)]
    command = first[len(prefix) :]  # what runs once installed: here, in this environment
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    result = subprocess.run(
        command, shell=True, capture_output=True, text=True, env={"PATH": path}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Explain server-sent events in one paragraph\n")
    assert result.stderr.startswith("[completed · demo · ")
