"""Things that go wrong, made on purpose: silent and refusing servers on 127.0.0.1, a mirror that
sends half a file, a model whose loss turns NaN at a chosen step, a disk that fills up."""
from __future__ import annotations

import errno
import http.server
import socket
import threading
from contextlib import contextmanager

import torch
from torch import nn

from models.base import GenerativeModel


@contextmanager
def silent_server():
    """A TCP server that accepts connections and never answers (a hung mirror or tracking
    server). Yields its http:// URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.05)
    accepted, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        sock.close()


def closed_port_url() -> str:
    """The URL of a port nothing listens on (a server that is down): connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@contextmanager
def http_server(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Promises a megabyte, sends a few bytes, hangs up: a download cut off half-way."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"\x1f\x8b\x08\x00partial")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class HealthyThenSilentHandler(http.server.BaseHTTPRequestHandler):
    """Answers the health check, then hangs on every API call (a server that stalls mid-run)."""

    def do_GET(self):
        if self.path.rstrip("/").endswith("/health"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
            return
        threading.Event().wait(30)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def disk_full_after(limit: int, write):
    """Wrap `write(self_or_path, data)`: the first `limit` calls succeed, then each call writes half
    of its data and raises ENOSPC, like a disk that fills up during the write."""
    calls = {"n": 0}

    def failing(target, data, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > limit:
            write(target, data[:len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return write(target, data, *args, **kwargs)
    return failing


class NaNAt(GenerativeModel):
    """Independent Bernoulli pixels whose training loss becomes NaN at (`nan_epoch`, `nan_step`),
    counting steps from 1 in each epoch: a divergence at a known place."""

    def __init__(self, image_shape=(1, 28, 28), nan_epoch: int = 2, nan_step: int = 3, steps_per_epoch: int = 4):
        super().__init__(image_shape)
        self.logits = nn.Parameter(torch.zeros(image_shape))
        self.nan_at = (nan_epoch - 1) * steps_per_epoch + nan_step
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def training_flops_per_image(self) -> int:
        return 6 * self.num_pixels  # elementwise, as models.bernoulli counts it

    def nll(self, x):
        return nn.functional.binary_cross_entropy_with_logits(
            self.logits.expand_as(x), x, reduction="none").flatten(1).sum(1)

    def loss(self, x):
        self.calls += 1
        loss = self.nll(x).mean()
        return loss * float("nan") if int(self.calls) == self.nan_at else loss

    @torch.no_grad()
    def sample(self, n, generator=None):
        return (torch.rand((n, *self.image_shape), generator=generator) < torch.sigmoid(self.logits)).float()
