"""The HTTP layer: a FastAPI app over a `Service`.

    POST /v1/images          images (PNG, base64) of one request, with what ran and what it cost
    GET  /v1/configurations  what can be asked for (with a front: measured costs and quality)
    GET  /healthz            the process is up
    GET  /readyz             the worker runs and the server is not draining (else 503)
    GET  /metrics            Prometheus text

Errors are JSON `{"error": message}` with a 4xx/5xx status (429 and 503 with Retry-After).
With an API key every route but /healthz and /readyz needs `Authorization: Bearer KEY`
(compared in constant time). Bodies over the limit are refused (413) before they are parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .schema import AUTO, RequestError
from .service import Service


def error_response(err: RequestError) -> JSONResponse:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


def create_app(service: Service, *, api_key: str | None = None, manage_worker: bool = True):
    """The app; `manage_worker`: start the worker on startup and stop it on shutdown (Ray
    replicas start theirs in their constructor)."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if manage_worker:
            service.start()
        yield
        if manage_worker:
            await asyncio.to_thread(service.stop)

    app = FastAPI(title="variant serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    secret = None if api_key is None else api_key.encode()

    def authorize(request: Request) -> None:
        _authorize(service, secret, request)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError):
        return error_response(err)

    @app.post("/v1/images")
    async def images(request: Request):
        authorize(request)
        return await _images(service, request)

    @app.get("/v1/configurations")
    async def configurations(request: Request):
        authorize(request)
        return JSONResponse(service.configurations())

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not service.ready:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics(request: Request):
        authorize(request)
        service.metrics.set_queue(*service.scheduler.depth)
        return Response(service.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return BodyLimit(app, service.limits.max_body_bytes)


def _authorize(service: Service, secret: bytes | None, request: Request) -> None:
    """RequestError(401) unless the request carries the bearer key (when there is one)."""
    if secret is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret):
        service.metrics.count("-", "unauthorized")
        raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' "
                                "with the key of the server's --api-key-file.")


async def _images(service: Service, request: Request):
    """Admit the request and await its images, or drop it if the client goes away first."""
    ticket = service.admit(await request.body())
    result = asyncio.wrap_future(ticket.future)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():  # the client went away: drop its request unless it is running
        service.scheduler.cancel(ticket)
        ticket.future.cancel()
        result.add_done_callback(_retrieve)
        service.metrics.count(ticket.spec or AUTO, "disconnected")
        return Response(status_code=499)
    try:
        served, spec = result.result()
    except RequestError:
        raise
    except Exception as err:  # noqa: BLE001 - the worker logged it; the client gets 500
        raise RequestError(500, f"sampling failed: {type(err).__name__}: {err}") from None
    return JSONResponse(service.answer(ticket, served, spec))


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read: the next ASGI message is
    the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # nobody awaits a disconnected client's result


class BodyLimit:
    """ASGI middleware: read a request's body up to `limit` bytes, answer 413 past it, then
    hand the body to the app (later receives, such as the disconnect, pass through)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(scope, receive, send)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replay_receive, send)

    async def _too_large(self, scope, receive, send):
        err = RequestError(413, f"the body is over this server's limit of {self.limit} bytes "
                                "(--max-body); send fewer or shorter fields.")
        await error_response(err)(scope, receive, send)


def run_http(service: Service, *, host: str, port: int, api_key: str | None = None,
             drain_timeout: float = 30.0, on_ready=None) -> None:
    """Serve until SIGTERM or SIGINT, then drain: queued requests are answered 503 at once,
    the running batch finishes and is answered, and the process returns within
    `drain_timeout` seconds (uvicorn's graceful-shutdown bound)."""
    import signal

    import uvicorn

    loop_box = []

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if loop_box:  # answer the queue from the event loop, not inside the signal handler
                loop_box[0].call_soon_threadsafe(service.drain)
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            loop_box.append(asyncio.get_running_loop())
            await super().startup(sockets)
            if on_ready is not None and not self.should_exit:
                on_ready()

    config = uvicorn.Config(create_app(service, api_key=api_key), host=host, port=port,
                            log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=max(1, math.ceil(drain_timeout)))
    # uvicorn re-raises the signal it caught once it has shut down; SIGTERM then meets this
    # handler instead of the default one, so a drained server exits 0
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: None)
    try:
        DrainingServer(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
