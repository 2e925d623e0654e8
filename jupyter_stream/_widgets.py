"""The widgets: a streaming reply with Stop and a timeout slider (``ChatView``), and the
``ChatPanel``. The only module that imports ipywidgets.

Handlers never print and never block: Stop calls the stream's thread-safe ``close()``, the
slider its ``set_deadline()``, so they act at once from whatever thread the kernel runs comm
messages on (a subshell's, on JupyterLab 4.4 and later). Frames are rendered by the task that
follows the stream (``_follow.follow``), at most 20 a second.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from ._exceptions import JupyterStreamError
from ._follow import StatusThrottle, follow, reply_mark, status_text
from ._kernel_compat import midcell_notice, serving
from ._loop import private_loop
from ._render import BlockSplitter, Rendered, status_html
from ._session import ChatSession
from ._stream import ChatStream, StopReason

__all__ = ["ChatPanel", "ChatView", "PromptBox", "ReplyView"]


# A kernel's anywidget asks its front end for "~<its minor>.*", so a kernel and a JupyterLab from
# different environments (Kaggle's anywidget 0.9.21 in a Lab with 0.11) fail with "anywidget,
# version ~0.9.* is not registered". Our widgets use only what every front end since 0.9.21
# offers (render, model.get/on/send, custom messages): they ask for that range instead.
_FRONT_ENDS = ">=0.9.21 <1"


class _Widget(anywidget.AnyWidget):
    _model_module_version = traitlets.Unicode(_FRONT_ENDS).tag(sync=True)
    _view_module_version = traitlets.Unicode(_FRONT_ENDS).tag(sync=True)


class ReplyView(_Widget):
    """A reply as it grows: Markdown rendered in the kernel (raw HTML escaped), reasoning apart
    and dimmed in a collapsible box.

    Traffic is append-mostly: each frame is one custom message with the blocks finished since
    the last frame (sent once; a long table's or code block's new rows or lines go into the
    block before) and the unfinished tail block, if it changed. A view that appears mid-reply
    (rendered late, a second view, a reloaded page) asks for the whole reply once.
    """

    _esm = """
    function render({ model, el }) {
      const make = (tag, cls) => {
        const node = document.createElement(tag);
        if (cls) node.className = cls;
        return node;
      };
      const MD = "jp-RenderedHTMLCommon jp-RenderedMarkdown";
      const reasoning = make("details", "jupyter-stream-reasoning");
      reasoning.style.opacity = "0.65";
      reasoning.style.display = "none";
      const summary = make("summary");
      summary.textContent = "Reasoning";
      const reasoningBody = make("div", MD);
      const reasoningTail = make("div");
      reasoningBody.append(reasoningTail);
      reasoning.append(summary, reasoningBody);
      const answer = make("div", MD + " jupyter-stream-answer");
      const answerTail = make("div");
      answer.append(answerTail);
      const status = make("div", "jupyter-stream-status");
      status.style.opacity = "0.7";
      status.style.fontSize = "85%";
      el.append(reasoning, answer, status);
      // The tails' HTML: a frame keeps the first k UTF-16 units and appends the rest.
      let tailHtml = "";
      let reasoningHtml = "";
      const add = (body, tail, blocks) => {
        for (const piece of blocks || []) {
          // More rows or lines of a long table or code block: into the block before.
          const into = typeof piece === "string" ? null : tail.previousElementSibling;
          const target = into && into.querySelector(piece.into);
          if (target) {
            target.insertAdjacentHTML("beforeend", piece.html);  // rendered and escaped as below
            continue;
          }
          const block = make("div");
          // rendered by markdown-it in the kernel, raw HTML escaped
          block.innerHTML = typeof piece === "string" ? piece : piece.html;
          body.insertBefore(block, tail);
        }
      };
      const apply = (msg) => {
        if (msg.reset) {
          reasoningBody.replaceChildren(reasoningTail);
          answer.replaceChildren(answerTail);
          tailHtml = reasoningHtml = "";
        }
        add(reasoningBody, reasoningTail, msg.ra);
        if (msg.rt != null) {
          reasoningHtml = reasoningHtml.slice(0, msg.rk || 0) + msg.rt;
          reasoningTail.innerHTML = reasoningHtml;
        }
        if (msg.ra?.length || reasoningHtml) reasoning.style.display = "";
        add(answer, answerTail, msg.a);
        if (msg.t != null) {
          tailHtml = tailHtml.slice(0, msg.tk || 0) + msg.t;
          answerTail.innerHTML = tailHtml;
        }
        if (msg.s != null) status.textContent = msg.s;
      };
      model.on("msg:custom", apply);
      model.send({ event: "sync" });
      return () => model.off("msg:custom", apply);
    }
    export default { render };
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._answer = _Growing(blocks="a", keep="tk", tail="t", keep_markdown=True)
        self._reasoning = _Growing(blocks="ra", keep="rk", tail="rt")
        self._status = ""
        self._lock = threading.Lock()
        self.on_msg(self._on_custom)

    def show(
        self,
        text: str,
        reasoning: str = "",
        *,
        final: bool = False,
        status: str | None = None,
        quick: bool = False,
    ) -> None:
        """Bring the views up to ``text``, ``reasoning`` and ``status``: one message, or none.
        ``quick``: someone waits for the final frame (see ``BlockSplitter.update``)."""
        with self._lock:
            message: dict[str, Any] = {}
            if reasoning:
                self._reasoning.advance(reasoning, final, message, quick)
            self._answer.advance(text, final, message, quick)
            if status is not None and status != self._status:
                self._status = message["s"] = status
            if message:
                self.send(message)

    def rendered(self) -> tuple[Rendered | None, Rendered | None]:
        """The answer and the reasoning as the final frame left them (None before it), for
        the final output to reuse."""
        with self._lock:
            return self._answer.splitter.rendered(), self._reasoning.splitter.rendered()

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "sync":
            with self._lock:
                message: dict[str, Any] = {"reset": True, "s": self._status}
                self._reasoning.snapshot(message)
                self._answer.snapshot(message)
                self.send(message)


class _Growing:
    """One growing Markdown text of a reply (the answer, or the reasoning) as its views hold
    it, and the keys under which a frame carries its changes."""

    def __init__(self, *, blocks: str, keep: str, tail: str, keep_markdown: bool = False) -> None:
        self.splitter = BlockSplitter(keep_markdown=keep_markdown)
        self._keys = (blocks, keep, tail)
        self.tail = ""  # the unfinished block's HTML, as the views have it

    def advance(self, text: str, final: bool, message: dict[str, Any], quick: bool) -> None:
        """Put into ``message`` what brings the views from the last text to ``text``."""
        blocks, keep, tail = self._keys
        frame = self.splitter.update(text, final=final, quick=quick)
        if frame.finished:
            pieces = [
                piece if isinstance(piece, str) else {"into": piece.into, "html": piece.html}
                for piece in frame.finished
            ]
            message[blocks] = pieces
        if frame.tail is not None:
            message[keep], message[tail] = _edit(self.tail, frame.tail)
            self.tail = frame.tail

    def snapshot(self, message: dict[str, Any]) -> None:
        """Put into ``message`` all of it, for a view that starts afresh: the finished blocks
        with their continuations merged, not the thousands of pieces that sent them."""
        blocks, _keep, tail = self._keys
        message[blocks] = self.splitter.blocks()
        message[tail] = self.tail


def _edit(old: str, new: str) -> tuple[int, str]:
    """How to turn ``old`` into ``new``: keep a prefix (its length in UTF-16 units, as
    JavaScript counts), then append the rest. A growing paragraph costs only what grew."""
    if new.startswith(old):
        keep = len(old)
    else:  # the longest common prefix, by halves: string comparisons run in C
        low, high = 0, min(len(old), len(new))
        while low < high:
            middle = (low + high + 1) // 2
            if new.startswith(old[:middle]):
                low = middle
            else:
                high = middle - 1
        keep = low
    return len(old[:keep].encode("utf-16-le", "surrogatepass")) // 2, new[keep:]


class _Box(widgets.VBox):  # type: ignore[misc]
    """A VBox that ``display(box, display_id=True)`` shows under that display id on ipywidgets 7
    too (its ``_ipython_display_`` publishes without one, so the final reply found no place)."""

    if not hasattr(widgets.Widget, "_repr_mimebundle_"):  # ipywidgets 7
        _ipython_display_ = None

        def _repr_mimebundle_(self, **_kwargs: Any) -> dict[str, Any]:
            view = {"version_major": 2, "version_minor": 0, "model_id": self.model_id}
            return {"text/plain": repr(self), "application/vnd.jupyter.widget-view+json": view}


class _StreamControls:
    """Stop and the timeout slider, wired to the stream that streams now: Stop closes it, the
    slider moves its deadline, at once, from whatever thread runs comm messages."""

    def __init__(
        self,
        stop_button: widgets.Button,
        timeout_slider: widgets.FloatSlider,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.stop_button = stop_button
        self.timeout_slider = timeout_slider
        self.stream: ChatStream | None = None
        stop = on_stop or self.stop
        stop_button.on_click(lambda _button: stop())
        timeout_slider.observe(self._on_slider, names="value")

    def attach(self, stream: ChatStream) -> None:
        self.stream = stream
        self.stop_button.disabled = False

    def stop(self) -> None:
        stream = self.stream
        if stream is not None:
            stream.close(StopReason.STOPPED)

    def _on_slider(self, change: dict[str, Any]) -> None:
        stream = self.stream
        if stream is not None and not stream.done:
            stream.set_deadline(float(change["new"]))


class ChatView:
    """One streaming reply: the answer as it grows, reasoning apart, Stop, the timeout slider
    and a status line."""

    def __init__(self, *, timeout: float, max_timeout: float = 600.0) -> None:
        self.reply = ReplyView()
        # Where the kernel cannot run Stop mid-cell, the widgets say so from the start.
        self._notice = midcell_notice()
        self.stop_button = widgets.Button(
            description="Stop",
            icon="stop",
            button_style="danger",
            disabled=True,
            tooltip=self._notice
            or "Stop the reply now (the connection is closed, the text so far is kept)",
        )
        self.timeout_slider = timeout_slider(timeout, max_timeout)
        self._controls = _StreamControls(self.stop_button, self.timeout_slider)
        self._row = widgets.HBox([self.stop_button, self.timeout_slider])
        self.box = _Box([self.reply, self._row])
        self._status = StatusThrottle()
        if self._notice is not None:
            self.reply.show("", status=self._notice)

    def attach(self, stream: ChatStream) -> None:
        """Wire Stop and the slider to ``stream``."""
        self._controls.attach(stream)
        stream.set_deadline(self.timeout_slider.value)

    async def follow(self, stream: ChatStream) -> None:
        """Read ``stream`` to its end, drawing frames; the last frame is exact.

        Re-raises the stream's error, or the cancellation (a kernel interrupt), after drawing.
        """
        self.attach(stream)
        with serving(w.model_id for w in (self.reply, self.stop_button, self.timeout_slider)):
            await follow(stream, self.draw)

    def draw(self, stream: ChatStream, final: bool = False) -> None:
        status = None
        if self._status.due(final):  # rides along with a frame
            status = status_text(stream)
            if self._notice is not None and not final:
                status = f"{status} · {self._notice}"
        quick = final and _awaited(stream)
        self.reply.show(
            stream.text, stream.reply.reasoning, final=final, status=status, quick=quick
        )
        if final:
            self.stop_button.disabled = True
            self.timeout_slider.disabled = True

    def close(self) -> None:
        """Close every widget of the view, so that nothing of it is left in the notebook."""
        for widget in (
            self.reply,
            self.stop_button,
            self.timeout_slider,
            self._row,
            self.box,
        ):
            _close(widget)


def _awaited(stream: ChatStream) -> bool:
    """Whether the stream was ended by someone who waits for it to end (Stop, the deadline, an
    interrupt, a rule), rather than by the model."""
    reason = stream.stop_reason
    return reason is not None and not reason.natural


class PromptBox(_Widget):
    """A text box where Shift+Enter sends (a few lines of front-end code, via anywidget)."""

    _esm = """
    function render({ model, el }) {
      const area = document.createElement("textarea");
      area.className = "jupyter-stream-prompt";
      area.rows = 3;
      area.style.width = "100%";
      area.style.boxSizing = "border-box";
      area.placeholder = model.get("placeholder");
      area.value = model.get("value");
      const sync = () => { model.set("value", area.value); model.save_changes(); };
      area.addEventListener("change", sync);
      // Keys typed here are text, not notebook shortcuts (Shift+Enter would run the cell, "a"
      // add one): Lumino matches no shortcut under this attribute, whether it listens in the
      // capture phase (Notebook 7) or the bubbling one (JupyterLab, where stopping will do).
      area.setAttribute("data-lm-suppress-shortcuts", "true");
      area.addEventListener("keydown", (event) => {
        event.stopPropagation();
        if (event.key === "Enter" && event.shiftKey) {
          event.preventDefault();
          const text = area.value;
          area.value = "";
          model.set("value", "");
          model.save_changes();
          model.send({ event: "submit", text });
        }
      });
      model.on("change:value", () => {
        if (area.value !== model.get("value")) area.value = model.get("value");
      });
      model.on("change:disabled", () => { area.disabled = model.get("disabled"); });
      el.appendChild(area);
    }
    export default { render };
    """
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("Ask something… (Shift+Enter sends)").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._submit_handlers: list[Callable[[str], None]] = []
        self.on_msg(self._on_custom)

    def on_submit(self, handler: Callable[[str], None]) -> None:
        self._submit_handlers.append(handler)

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            text = str(content.get("text", ""))
            for handler in self._submit_handlers:
                handler(text)


class ChatPanel(widgets.VBox):  # type: ignore[misc]
    """A chat in a widget: transcript, prompt box (Shift+Enter sends), Send, Stop, timeout
    slider, model picker and status.

    Sending while a reply streams closes that reply (reason ``superseded``) and starts the new
    one; with ``supersede=False`` the new question waits its turn instead, and is asked when the
    reply ends. ``api`` is the wire protocol (``"chat"``, ``"responses"``, ``"anthropic"``,
    ``"gemini"``, ``"ollama"``); the model picker lists that API's models. Options (``model``,
    ``base_url``, ``system``, ``temperature``, ``max_tokens``, ``stop_when``,
    ``stop_sequences``, ``priority``, …) are those of :func:`astream_chat`.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        system: str | None = None,
        api: str | None = None,
        timeout: float = 120.0,
        max_timeout: float = 600.0,
        supersede: bool = True,
        **options: Any,
    ) -> None:
        from ._config import configured_endpoint, resolve_model

        self._loop_thread: int | None = None  # None: always hop with call_soon_threadsafe
        try:
            self._loop = asyncio.get_running_loop()  # a notebook cell runs on the kernel's loop
            self._loop_thread = threading.get_ident()
        except RuntimeError:
            self._loop = private_loop()
        self._options = options
        endpoint = configured_endpoint(options.get("base_url"), options.get("api_key"), api)
        model = resolve_model(model, endpoint)
        # The API as resolved (env, host or key included), so turns and the picker agree on it.
        self.api = endpoint.api
        self.session = ChatSession(system=system, supersede=supersede, api=self.api)
        self._queue: list[str] = []  # questions waiting for the reply to end (no supersede)
        self.transcript = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.prompt = PromptBox()
        self.send_button = widgets.Button(
            description="Send", icon="paper-plane", button_style="primary"
        )
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True
        )
        self.model_picker = widgets.Dropdown(options=[model], value=model, description="Model")
        self.timeout_slider = timeout_slider(timeout, max_timeout)
        self.status = widgets.HTML(status_html("ready"))
        controls = widgets.HBox(
            [self.send_button, self.stop_button, self.model_picker, self.timeout_slider],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        super().__init__([self.transcript, self.prompt, controls, self.status])
        self._controls = _StreamControls(self.stop_button, self.timeout_slider, self.stop)
        self._task: asyncio.Task[None] | None = None
        self._models_task: asyncio.Task[None] | None = None
        self.send_button.on_click(lambda _button: self.send(self.prompt.value))
        self.prompt.on_submit(self.send)
        self._call(self._load_models)

    # -- what the buttons do; callable from any thread ------------------------------------------

    def send(self, text: str) -> None:
        """Ask ``text`` as the next turn: at once, superseding a reply still streaming, or,
        with ``supersede=False``, when that reply ends."""
        text = text.strip()
        if not text:
            return
        self.prompt.value = ""
        self._call(lambda: self._start(text))

    def stop(self) -> None:
        """Stop the reply that streams now, if any (and forget the questions waiting)."""
        self._queue.clear()
        self._controls.stop()

    @property
    def supersede(self) -> bool:
        """Whether sending while a reply streams closes it (else the question waits)."""
        return self.session.supersede

    @supersede.setter
    def supersede(self, value: bool) -> None:
        self.session.supersede = value

    @property
    def stream(self) -> ChatStream | None:
        """The latest turn's stream."""
        return self._controls.stream

    async def wait(self) -> None:
        """Wait until the model picker has the server's models and the current turn's reply
        has ended, and those of questions waiting their turn (for scripts, notebooks run
        headless, and tests)."""
        if self._models_task is not None:
            await asyncio.shield(self._models_task)
        while self._task is not None:  # and for the questions that waited their turn
            task = self._task
            await asyncio.shield(task)
            if self._task is task:
                return

    # -- on the panel's loop --------------------------------------------------------------------

    def _call(self, callback: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)

    def _start(self, text: str) -> None:
        current = self._controls.stream
        if current is not None and not current.done:
            if not self.session.supersede:
                self._queue.append(text)
                self._set_status(current)
                return
            current.close(StopReason.SUPERSEDED)
        options = dict(self._options)
        options.setdefault("timeout", self.timeout_slider.value)
        try:
            stream = self.session.astream(text, model=self.model_picker.value, **options)
        except JupyterStreamError as exc:  # a configuration error: say so where the user looks
            self.status.value = status_html(str(exc))
            return
        self._controls.attach(stream)
        turn = _TurnView(text)
        self.transcript.children = (*self.transcript.children, turn.box)
        self._task = self._loop.create_task(self._run(stream, turn))

    async def _run(self, stream: ChatStream, turn: _TurnView) -> None:
        status = StatusThrottle()

        def draw(stream: ChatStream, final: bool) -> None:
            turn.draw(stream, final)
            if status.due(final):
                self._set_status(stream)

        try:
            await follow(stream, draw)
        except asyncio.CancelledError:
            raise
        except JupyterStreamError:  # shown in the status line and under the turn
            pass
        finally:
            if stream is self._controls.stream:
                self.stop_button.disabled = True
                if self._queue:
                    self._start(self._queue.pop(0))

    def _set_status(self, stream: ChatStream) -> None:
        if stream is not self._controls.stream:
            return
        text = status_text(stream)
        if stream.error is not None:
            text += f" — {stream.error}"
        if self._queue:
            text += f" · {_waiting(len(self._queue))}"
        self.status.value = status_html(text)

    def _load_models(self) -> None:
        from ._models import alist_models

        async def load() -> None:
            try:
                models = await alist_models(
                    base_url=self._options.get("base_url"),
                    api_key=self._options.get("api_key"),
                    api=self.api,
                )
            except Exception as exc:  # the picker keeps the configured model
                self.status.value = status_html(f"could not list the models: {exc}")
                return
            current = self.model_picker.value
            self.model_picker.options = sorted({*models, current})
            self.model_picker.value = current

        self._models_task = self._loop.create_task(load())


def _waiting(count: int) -> str:
    return f"{count} question{'' if count == 1 else 's'} waiting for the reply to end"


class _TurnView:
    """One turn in the panel's transcript: the question, the answer, and how it ended."""

    def __init__(self, prompt: str) -> None:
        question = html.escape(prompt).replace("\n", "<br>")
        self.question = widgets.HTML(f"<b>You:</b> {question}")
        self.reply = ReplyView()
        self.footer = widgets.HTML()
        self.box = widgets.VBox([self.question, self.reply, self.footer])

    def draw(self, stream: ChatStream, final: bool) -> None:
        quick = final and _awaited(stream)
        self.reply.show(stream.text, stream.reply.reasoning, final=final, quick=quick)
        if final:
            mark = reply_mark(stream)
            if mark is not None or stream.error is not None:
                said = mark or ""
                if stream.error is not None:
                    said = f"{said}: {stream.error}"
                self.footer.value = status_html("", said)


def timeout_slider(timeout: float, max_timeout: float) -> widgets.FloatSlider:
    """Seconds a reply may take, counted from its request; moving it moves the deadline now."""
    return widgets.FloatSlider(
        value=timeout,
        min=min(1.0, timeout),
        max=max(max_timeout, timeout),
        step=1.0,
        description="Timeout (s)",
        readout_format=".0f",
        style={"description_width": "initial"},
        tooltip="The reply's deadline, in seconds since it was asked",
    )


def _close(widget: Any) -> None:
    """Close a widget and its layout and style (closing twice is harmless)."""
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            part.close()
    widget.close()
