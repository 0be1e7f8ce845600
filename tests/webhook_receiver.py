"""A webhook receiver for the tests: verifies each delivery with the official SDK's `unwrap`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai


@dataclass
class Receiver:
    """Records every delivery; answers 500 while `failing` is above zero (counting down)."""

    secret: str = ""
    failing: int = 0
    attempts: list[dict[str, str]] = field(default_factory=list)
    events: dict[str, Any] = field(default_factory=dict)
    """webhook-id → the event `unwrap` returned, for deliveries answered 200."""
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def serve(receiver: Receiver, port: int = 0) -> ThreadingHTTPServer:
    sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.attempts.append(headers)
                failing = receiver.failing > 0
                receiver.failing -= failing
            if failing:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"receiver down" * 1000)
                return
            try:
                event = sdk.webhooks.unwrap(body, headers, secret=receiver.secret)
            except Exception as exc:
                receiver.refused.append(repr(exc))
                self.send_response(400)
                self.end_headers()
                return
            with receiver.lock:
                receiver.events.setdefault(headers["webhook-id"], event)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
