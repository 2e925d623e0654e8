"""Relay mode: forward chat requests to a real OpenAI-compatible server, stream its answer back.

The upstream's bytes are passed on as they arrive, cut only at event boundaries (an event split
across two reads goes out when its end arrives, which is when a client could use it anyway), so
that an error found mid-answer can be sent as an SSE error event of its own. The relay runs inside
an :class:`~jupyter_stream.server._app.Exchange`: when its client disconnects the relay is
cancelled, which closes the upstream response at once, so the upstream sees the disconnect too.

Errors before the upstream's first byte are answered with the upstream's own status and body (or,
when the upstream cannot be reached, 502 or 504 in OpenAI's error shape).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import Response

from .._config import Endpoint, check_base_url
from .._protocol import excerpt

if TYPE_CHECKING:
    from ._app import Exchange, ServerConfig, Work

__all__ = ["Relay"]

ERROR_BODY_LIMIT = 64 * 1024
_FORWARDED_HEADERS = ("content-type", "retry-after", "x-request-id")
_BOUNDARIES = (b"\n\n", b"\r\r", b"\n\r\n", b"\r\n\n")


class Relay:
    def __init__(self, config: ServerConfig) -> None:
        assert config.upstream is not None
        self.upstream = Endpoint(
            check_base_url(config.upstream, "--upstream"),
            "--upstream",
            config.upstream_api_key,
            "the upstream key variable",
        )
        self._timeout = httpx.Timeout(
            config.upstream_idle_timeout, connect=config.upstream_connect_timeout
        )
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the server's loop, at first use
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _headers(self, request: Request | None = None) -> dict[str, str]:
        headers = self.upstream.headers()  # the upstream's key
        headers["Accept-Encoding"] = "identity"  # bytes pass through as they are
        if request is not None:
            headers["Accept"] = request.headers.get("accept", "*/*")
            headers["Content-Type"] = request.headers.get("content-type", "application/json")
        return headers

    def chat(self, body: bytes, request: Request) -> Work:
        from ._app import SSE_HEADERS, error_response

        url = self.upstream.chat_url
        headers = self._headers(request)

        async def work(exchange: Exchange) -> None:
            exchange.log["upstream"] = self.upstream.host_port
            try:
                model = json.loads(body).get("model")
                exchange.log["model"] = model
            except (ValueError, AttributeError):
                pass  # the upstream judges its own requests
            try:
                upstream = await self.client.send(
                    self.client.build_request("POST", url, content=body, headers=headers),
                    stream=True,
                )
            except httpx.HTTPError as exc:
                response = self._unreachable(exc)
                exchange.log["end"] = f"upstream unreachable ({type(exc).__name__})"
                await exchange.start(response.status_code, response.raw_headers)
                await exchange.body(bytes(response.body), more=False)
                return
            try:
                forwarded = [
                    (name.encode(), value.encode())
                    for name in _FORWARDED_HEADERS
                    if (value := upstream.headers.get(name)) is not None
                ]
                if upstream.status_code >= 400:
                    data = await _read_limited(upstream)
                    if not _is_json(data):
                        said = excerpt(data[:4096].decode("utf-8", "replace"))
                        data = bytes(
                            error_response(
                                upstream.status_code,
                                f"the upstream answered {upstream.status_code}: {said}",
                                type="upstream_error",
                            ).body
                        )
                        forwarded = [(b"content-type", b"application/json")] + [
                            h for h in forwarded if h[0] != b"content-type"
                        ]
                    exchange.log["end"] = f"upstream {upstream.status_code}"
                    await exchange.start(upstream.status_code, forwarded)
                    await exchange.body(data, more=False)
                    return
                events = upstream.headers.get("content-type", "").startswith("text/event-stream")
                if events:
                    forwarded = SSE_HEADERS + [h for h in forwarded if h[0] != b"content-type"]
                await exchange.start(upstream.status_code, forwarded)
                if events:
                    await self._pass_on(upstream, exchange)
                else:  # a whole answer (stream false): passed on as it is
                    async for data in upstream.aiter_raw():
                        await exchange.body(data)
                    await exchange.body(b"", more=False)
            finally:
                await upstream.aclose()

        return work

    async def _pass_on(self, upstream: httpx.Response, exchange: Exchange) -> None:
        held = b""
        chunks = 0
        try:
            async for data in upstream.aiter_raw():
                if held:
                    data = held + data
                if data.endswith(b"\n\n"):
                    held = b""
                else:
                    cut = max(data.rfind(b) + len(b) if b in data else 0 for b in _BOUNDARIES)
                    data, held = data[:cut], data[cut:]
                    if not data:
                        continue
                chunks += 1
                await exchange.body(data)
        except httpx.HTTPError as exc:
            message = (
                f"the upstream {self.upstream.host_port} failed mid-answer "
                f"({type(exc).__name__}: {self.upstream.redact(str(exc)) or 'no detail'}); "
                "what arrived before is complete"
            )
            error = {"error": {"message": message, "type": "upstream_error", "code": None}}
            exchange.log["end"] = f"upstream failed ({type(exc).__name__})"
            await exchange.body(b"data: " + json.dumps(error).encode() + b"\n\n", more=False)
            return
        exchange.log.setdefault("end", "upstream done")
        exchange.log["writes"] = chunks
        await exchange.body(held, more=False)

    def _unreachable(self, exc: httpx.HTTPError) -> Response:
        from ._app import error_response

        where = self.upstream.host_port
        if isinstance(exc, httpx.TimeoutException):
            return error_response(
                504, f"the upstream {where} did not answer in time", type="upstream_error"
            )
        return error_response(
            502,
            f"could not reach the upstream {where} ({type(exc).__name__}); check --upstream",
            type="upstream_error",
        )

    async def models(self) -> Response:
        try:
            upstream = await self.client.get(self.upstream.url("/models"), headers=self._headers())
        except httpx.HTTPError as exc:
            return self._unreachable(exc)
        content_type = upstream.headers.get("content-type", "application/json")
        return Response(upstream.content, upstream.status_code, media_type=content_type)


async def _read_limited(response: httpx.Response) -> bytes:
    parts, size = [], 0
    async for part in response.aiter_raw():
        parts.append(part)
        size += len(part)
        if size >= ERROR_BODY_LIMIT:
            break
    return b"".join(parts)[:ERROR_BODY_LIMIT]


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
