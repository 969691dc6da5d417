"""The HTTP listener ``serve`` and the relay answer on: idle connections hold no thread, busy ones are few.

A stock ``ThreadingHTTPServer`` starts a thread per accepted connection and
that thread waits for the request line for ever: 150 idle connections are
150 threads, until the device runs out. Here an accepted connection waits in
one selector, without a thread, until its whole request head has arrived
(looked at with ``MSG_PEEK``, so the handler reads it as usual); only then does
a handler thread take it, at most ``MAX_HTTP_HANDLERS`` at a time. A head not
sent whole within ``HTTP_REQUEST_TIMEOUT_S`` is given up on, threadless too.
Connections still silent after ``HTTP_IDLE_TIMEOUT_S`` are closed, and past
``MAX_HTTP_CONNECTIONS`` waiting ones the oldest is closed first::

    httpd = BoundedHTTPServer(("127.0.0.1", 9400), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ...
    httpd.shutdown(); httpd.server_close()
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from airlock.limits import (
    HTTP_IDLE_TIMEOUT_S,
    HTTP_REQUEST_TIMEOUT_S,
    MAX_HTTP_CONNECTIONS,
    MAX_HTTP_HANDLERS,
)

__all__ = ["BoundedHTTPServer"]

#: A request head (line and headers) longer than this is not one of ours: GET /metrics.
_MAX_HEAD = 16 * 1024


def _peek(sock: socket.socket) -> bytes | None:
    """What the peer has sent so far, left in the socket for the handler; None when gone."""
    try:
        data = sock.recv(_MAX_HEAD, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError:
        return None
    return data or None


class BoundedHTTPServer(HTTPServer):
    """An HTTPServer whose connections wait in a selector and whose handlers are bounded."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 handlers: int = MAX_HTTP_HANDLERS) -> None:
        handler.timeout = HTTP_REQUEST_TIMEOUT_S  # a started request must arrive whole, soon
        super().__init__(address, handler)
        self._waiting: dict[socket.socket, tuple[float, Any]] = {}  # sock -> (since, address)
        self._partial: set[socket.socket] = set()  # waiting ones that sent part of a head
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._handlers = threading.BoundedSemaphore(handlers)
        self._closed = threading.Event()
        self._waiter = threading.Thread(target=self._wait_loop, name="http-wait", daemon=True)
        self._waiter.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Park the connection until its whole request head is there (no thread yet)."""
        with self._lock:
            while len(self._waiting) >= MAX_HTTP_CONNECTIONS:
                oldest = min(self._waiting, key=lambda s: self._waiting[s][0])
                self._drop(oldest)
            self._waiting[request] = (time.monotonic(), client_address)
            self._selector.register(request, selectors.EVENT_READ)

    def _drop(self, sock: socket.socket) -> None:
        """Forget and close a waiting connection (the caller holds the lock)."""
        self._waiting.pop(sock, None)
        self._partial.discard(sock)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self.shutdown_request(sock)

    def _wait_loop(self) -> None:
        while not self._closed.is_set():
            try:
                ready = [k.fileobj for k, _ in self._selector.select(timeout=0.1)]
            except (OSError, ValueError):  # closed under us at shutdown
                ready = []
            now = time.monotonic()
            start: list[tuple[socket.socket, Any]] = []
            with self._lock:
                for sock in [*ready, *self._partial]:
                    assert isinstance(sock, socket.socket)
                    if sock not in self._waiting:
                        continue
                    head = _peek(sock)
                    if head is None or (len(head) >= _MAX_HEAD and b"\r\n\r\n" not in head):
                        self._drop(sock)  # gone, or a head no request of ours needs
                    elif b"\r\n\r\n" in head or b"\n\n" in head:
                        address = self._waiting.pop(sock)[1]
                        self._partial.discard(sock)
                        with contextlib.suppress(KeyError, ValueError):
                            self._selector.unregister(sock)
                        start.append((sock, address))
                    elif sock not in self._partial:  # half sent: looked at again each turn
                        self._partial.add(sock)
                        self._selector.unregister(sock)
                for sock, (since, _) in list(self._waiting.items()):
                    limit = HTTP_REQUEST_TIMEOUT_S if sock in self._partial else HTTP_IDLE_TIMEOUT_S
                    if now - since > limit:
                        self._drop(sock)
            for sock, address in start:
                self._start(sock, address)

    def _start(self, sock: socket.socket, address: Any) -> None:
        if not self._handlers.acquire(timeout=HTTP_REQUEST_TIMEOUT_S):
            self.shutdown_request(sock)  # every handler busy for that long: try again later
            return
        threading.Thread(target=self._handle, args=(sock, address), name="http",
                         daemon=True).start()

    def _handle(self, sock: socket.socket, address: Any) -> None:
        try:
            self.finish_request(sock, address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            self.shutdown_request(sock)
            self._handlers.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a peer that went away or timed out is not news for the event log

    def server_close(self) -> None:
        self._closed.set()
        with self._lock:
            for sock in list(self._waiting):
                self._drop(sock)
        super().server_close()
        self._selector.close()
