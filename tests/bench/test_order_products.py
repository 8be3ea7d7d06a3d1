"""The order scenarios buy none of the warm read's products (Options.order_products), so the
budget rounds, which measure product_get after the previous round's orders, read it warm:
the range as make bench passes it, and bench/load/order_place.lua keeping to it under wrk."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from bench.suite.state import Options
from bench.suite.wrk import Load, run


def test_orders_buy_above_the_warm_reads_range() -> None:
    options = Options()
    assert options.order_products() == {
        "BENCH_PRODUCTS": str(options.products),
        "BENCH_FIRST_PRODUCT": str(options.hot_products + 1),
    }
    # No ids above the hot range: every id, as before (a run with nothing else to buy).
    assert Options(products=200, hot_products=200).order_products()["BENCH_FIRST_PRODUCT"] == "1"


class _Orders(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(201)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    _Orders.bodies.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_order_place_lua_buys_only_from_the_first_product_on(receiver: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("token\n")
    environment = {"BENCH_TOKENS": str(tokens), "BENCH_FIRST_PRODUCT": "7", "BENCH_PRODUCTS": "9"}
    measured = run(receiver, "order_place.lua", environment, Load(1.0, 2), os.getpid())
    assert measured.requests > 20
    bought = {int(m) for body in _Orders.bodies for m in re.findall(rb'"product_id":(\d+)', body)}
    assert bought == {7, 8, 9}
