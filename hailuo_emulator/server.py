"""The HTTP side: one thread per connection, faults injected around the API handlers."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from hailuo_emulator.apis import Req, Resp, route
from hailuo_emulator.clip import clip_bytes, warm
from hailuo_emulator.hosts import removed_file
from hailuo_emulator.state import State

SECRET_HEADERS = ("authorization", "x-api-key")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
        **config: Any,
    ) -> None:
        self.state = State(**config)
        super().__init__((host, port), Handler)
        self.scheme = "http"
        if tls is not None:  # HTTPS, for clients that speak nothing else (fal-client)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            # the handshake is made in the handler's thread, on the first read, so a slow or
            # broken client holds up no other connection
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client killed mid-request (the crash tests do this on purpose) is not an error,
        # nor is one that gave up on the TLS handshake
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: 100+ pollers reuse their connections
    # headers and body leave in one segment: no Nagle / delayed-ACK stall of ~40 ms a request
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the log API
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- plumbing -----------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        raw = self._read_body()
        if parts.path.startswith("/_emulator/"):
            self._control(method, parts.path, raw)
            return
        body = _parse(raw)
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Req(
            method,
            parts.path,
            dict(parse_qsl(parts.query)),
            headers,
            body,
            f"{self.server.scheme}://{headers.get('host', '127.0.0.1')}",
        )
        if parts.path.startswith("/_files/"):
            self._record(req, "download", None)
            self._download(req)
            return
        found = route(req)
        self._record(req, found[1] if found else "unknown", found[0].name if found else None)
        if latency := float(state.config["latency"] or 0):
            time.sleep(latency)
        if found is None:
            self._send(Resp(404, {"message": f"no route for {method} {parts.path}"}))
            return
        api, kind = found
        if isinstance(body, _Unparsable):
            self._send(api.error(400, "request body is not valid JSON", "invalidJson"))
            return
        self._api(req, api, kind)

    def _api(self, req: Req, api: Any, kind: str) -> None:
        state = self.server.state
        if fault := state.fires("rate_limit", kind):
            self._send(api.rate_limited(fault.options.get("retry_after", 1)))
            return
        if fault := state.fires("server_error", kind):
            self._send(api.server_error(int(fault.options.get("status", 500))))
            return
        drop = state.fires("drop", kind)
        if drop and drop.options.get("when", "after") == "before":
            self._drop()
            return
        if not api.authorised(req, state.config["key"]):
            self._send(api.unauthorised())
            return
        if form := state.config["echo_auth"]:
            value = req.headers.get("authorization") or req.headers.get("x-api-key", "")
            self._send(Resp(401, {"message": f"bad credentials: {_encode(value, form)}"}))
            return
        resp = api.handle(req, kind, state)
        if kind == "submit" and state.config["job_id"] is not None and 200 <= resp.status < 300:
            resp = Resp(resp.status, _swap_id(resp.body, state), resp.headers)
        if kind == "poll" and (depth := int(state.config["deep_json"] or 0)):
            self._send_raw(200, b"[" * depth + b"]" * depth, "application/json")
            return
        if kind == "poll" and (pad := int(state.config["answer_padding"] or 0)):
            self._send_padded(resp, pad)
            return
        if drop:  # the job exists now; its creator never learns
            self._drop()
            return
        if fault := state.fires("timeout", kind):
            time.sleep(float(fault.options.get("seconds", 30)))
        if fault := state.fires("bad_job_id", kind):
            resp = _with_job_id(resp, fault.options)
        if state.fires("malformed_json", kind):
            self._send_raw(resp.status, b'{"data": {"id": ', "application/json")
            return
        self._send(resp)

    def _download(self, req: Req) -> None:
        state = self.server.state
        job_id = req.path.rsplit("/", 1)[-1].removesuffix(".mp4")
        with state.lock:
            job = state.jobs.get(job_id)
        if job is None or job.phase() != "ok" or removed_file(job, state):
            self._send_raw(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        if state.config["expire_outputs"]:
            text = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            self._send_raw(403, text, "application/xml")
            return
        if fault := state.fires("server_error", "download"):
            self._send_raw(int(fault.options.get("status", 503)), b"busy", "text/plain")
            return
        data = clip_bytes(
            state.config["clip_path"],
            int(state.config["output_bytes"] or 0),
            job.serial,
            job.resolution,
            job.duration,
        )
        if state.fires("truncate_downloads", "download"):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
            return
        if state.config["gzip_downloads"]:
            packed = gzip.compress(data)
            self._send_raw(200, packed, "video/mp4", {"Content-Encoding": "gzip"})
            return
        if trickle := state.config["trickle_downloads"]:
            self._trickle(data, int(trickle.get("bytes", 1)), float(trickle.get("every", 1.0)))
            return
        self._send_raw(200, data, "video/mp4")

    def _trickle(self, data: bytes, size: int, every: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for start in range(0, len(data), size):
                self.wfile.write(data[start : start + size])
                self.wfile.flush()
                time.sleep(every)
        except OSError:  # the client gave up on it: the point of the switch
            self.close_connection = True

    def _send_padded(self, resp: Resp, pad: int) -> None:
        """A poll answer with `pad` bytes of filler, sent in pieces (never held whole)."""
        head = json.dumps(resp.body)
        if not head.startswith("{"):
            head = json.dumps({"answer": resp.body})
        opening = b'{"padding": "'
        closing = b'", ' + head[1:].encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(opening) + pad + len(closing)))
        self.end_headers()
        try:
            self.wfile.write(opening)
            piece = b"x" * (1 << 20)
            for start in range(0, pad, len(piece)):
                self.wfile.write(piece[: min(len(piece), pad - start)])
            self.wfile.write(closing)
        except OSError:
            self.close_connection = True

    def _control(self, method: str, path: str, raw: bytes) -> None:
        state = self.server.state
        if method == "POST" and path == "/_emulator/config":
            try:
                switches = json.loads(raw or b"{}")
                state.configure(switches)
            except (ValueError, TypeError) as err:
                self._send(Resp(400, {"error": str(err)}))
                return
            with state.lock:
                self._send(Resp(200, {"config": _jsonable(state.config)}))
        elif method == "POST" and path == "/_emulator/reset":
            state.reset()
            self._send(Resp(200, {"ok": True}))
        elif method == "POST" and path == "/_emulator/warm":
            warm(wait=True)
            self._send(Resp(200, {"ok": True}))
        elif method == "GET" and path == "/_emulator/requests":
            with state.lock:
                self._send(Resp(200, {"requests": list(state.log)}))
        elif method == "GET" and path == "/_emulator/jobs":
            self._send(Resp(200, state.counts()))
        elif method == "GET" and path == "/_emulator/job-list":
            self._send(Resp(200, {"jobs": state.job_list()}))
        elif method == "GET" and path == "/_emulator/faults":
            with state.lock:
                self._send(Resp(200, {"fired": dict(state.fired), "seen": dict(state.hits)}))
        else:
            self._send(Resp(404, {"error": f"no control {method} {path}"}))

    def _record(self, req: Req, kind: str, provider: str | None) -> None:
        headers = dict(self.headers.items())
        redacted = {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}
        self.server.state.record(
            {
                "t": time.time(),
                "method": req.method,
                "path": req.path,
                "query": dict(req.query),
                "headers": headers,
                "headers_redacted": redacted,
                "body": None if isinstance(req.body, _Unparsable) else req.body,
                "kind": kind,
                "provider": provider,
            }
        )

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, resp: Resp) -> None:
        data = json.dumps(resp.body).encode()
        self._send_raw(resp.status, data, "application/json", resp.headers)

    def _send_raw(self, status: int, data: bytes, ctype: str, headers: Any = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Unparsable:
    pass


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _Unparsable()


def _swap_id(body: Any, state: State) -> Any:
    """The submit answer with the job's id replaced by the configured hostile one; the job is
    also filed under it, as a provider would know it."""
    hostile = str(state.config["job_id"])

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, str) and value in state.jobs:
            with state.lock:
                state.jobs[hostile] = state.jobs[value]
            return hostile
        return value

    return swap(body)


def _encode(value: str, form: str) -> str:
    raw = value.encode()
    if form == "base64":
        return base64.b64encode(raw).decode()
    if form == "hex":
        return raw.hex()
    if form == "url":
        return quote(value, safe="")
    if form == "json":
        return json.dumps(value)
    return value


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "key"}


JOB_ID_FIELDS = ("id", "request_id", "task_id", "jobId")  # where each API puts the job id


def _with_job_id(resp: Resp, options: dict[str, Any]) -> Resp:
    """A successful submit answer with its job id replaced by options["value"] (or removed):
    the job was created all the same, as a buggy or hostile provider would leave it."""
    if resp.status >= 300 or not isinstance(resp.body, dict):
        return resp
    body = json.loads(json.dumps(resp.body))
    for holder in (body, body.get("data")):
        if not isinstance(holder, dict):
            continue
        for name in JOB_ID_FIELDS:
            if name in holder:
                if "value" in options:
                    holder[name] = options["value"]
                else:
                    del holder[name]
    return Resp(resp.status, body, resp.headers)
