"""A real IPython kernel driven by jupyter_client acting as the frontend.

It runs cells, collects every iopub message of each, and lets a test act mid-cell (click a
button, move a slider, interrupt) when a message arrives: no sleeps, only messages.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager, start_new_kernel

WAIT = 60.0  # seconds: a guard against hangs, never a timing assertion

Message = dict[str, Any]


@dataclass
class Execution:
    msg_id: str
    messages: list[Message] = field(default_factory=list)
    reply: Message | None = None

    def of_type(self, *types: str) -> list[Message]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def frames(self) -> list[dict[str, Any]]:
        """The ReplyView's frames (custom comm messages), in order."""
        return [
            m["content"]["data"]["content"]
            for m in self.of_type("comm_msg")
            if m["content"]["data"].get("method") == "custom"
        ]

    @property
    def final(self) -> Message:
        """The reply as the cell leaves it: the last display update."""
        updates = self.of_type("update_display_data")
        assert updates, f"no final output; got {[m['msg_type'] for m in self.messages]}"
        return updates[-1]["content"]

    @property
    def status(self) -> str:
        assert self.reply is not None
        return str(self.reply["content"]["status"])

    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout"
        )


class Kernel:
    def __init__(self, env: dict[str, str]) -> None:
        self.manager: KernelManager
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", env={**os.environ, **env}, startup_timeout=WAIT
        )
        self._pending: dict[str, Execution] = {}
        self._aliases: dict[str, Execution] = {}  # comm messages we sent -> their cell

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def submit(self, code: str) -> Execution:
        """Send a cell to run (it queues behind the ones before it)."""
        execution = Execution(self.client.execute(code, allow_stdin=False))
        self._pending[execution.msg_id] = execution
        return execution

    def wait(
        self, execution: Execution, on_message: Callable[[Message], None] | None = None
    ) -> Execution:
        """Collect iopub messages until ``execution`` is idle; ``on_message`` sees each of its
        messages as it arrives."""
        while True:
            message = self._next()
            parent = message["parent_header"].get("msg_id", "")
            target = self._pending.get(parent)
            if target is None:
                # What a comm handler sends (a reply to a view's request, say) has the comm
                # message for its parent: it counts for the cell that the comm belongs to.
                target = self._aliases.get(parent)
                if target is None or message["msg_type"] == "status":
                    continue
                target.messages.append(message)
                if target is execution and on_message is not None:
                    on_message(message)
                continue
            target.messages.append(message)
            if target is execution and on_message is not None:
                on_message(message)
            content = message["content"]
            if message["msg_type"] == "status" and content["execution_state"] == "idle":
                target.reply = self._reply(target.msg_id)
                if target is execution:
                    return execution

    def run(self, code: str, on_message: Callable[[Message], None] | None = None) -> Execution:
        return self.wait(self.submit(code), on_message)

    def ok(self, code: str) -> Execution:
        execution = self.run(code)
        assert execution.status == "ok", self.error_of(execution)
        return execution

    def error_of(self, execution: Execution) -> str:
        errors = execution.of_type("error")
        return errors[-1]["content"]["evalue"] if errors else execution.stdout()

    def send_comm(
        self, comm_id: str, data: dict[str, Any], on_behalf_of: Execution | None = None
    ) -> None:
        message = self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        if on_behalf_of is not None:
            self._aliases[message["header"]["msg_id"]] = on_behalf_of
        self.client.shell_channel.send(message)

    def click(self, comm_id: str) -> None:
        self.send_comm(comm_id, {"method": "custom", "content": {"event": "click"}})

    def set_state(self, comm_id: str, **state: Any) -> None:
        self.send_comm(comm_id, {"method": "update", "state": state, "buffer_paths": []})

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def _next(self) -> Message:
        try:
            message: Message = self.client.get_iopub_msg(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"the kernel sent nothing for {WAIT} s") from None
        return message

    def _reply(self, msg_id: str) -> Message:
        while True:
            try:
                reply: Message = self.client.get_shell_msg(timeout=WAIT)
            except queue.Empty:
                raise AssertionError("no execute_reply") from None
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply


def comm_opens(execution: Execution) -> Iterator[tuple[str, dict[str, Any]]]:
    for message in execution.of_type("comm_open"):
        content = message["content"]
        yield content["comm_id"], content["data"]["state"]


def comm_id_of(execution: Execution, **match: Any) -> str:
    """The comm id of the widget whose state has all of ``match``."""
    for comm_id, state in comm_opens(execution):
        if all(state.get(key) == value for key, value in match.items()):
            return comm_id
    raise AssertionError(f"no widget with {match}")


def reply_view_id(execution: Execution) -> str:
    for comm_id, state in comm_opens(execution):
        if "jupyter-stream-answer" in str(state.get("_esm", "")):
            return comm_id
    raise AssertionError("no ReplyView")
