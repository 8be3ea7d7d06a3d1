"""The test receiver itself (tests/fixtures/webhooks.py): a request whose sender goes away in
the middle of its body is no delivery (a worker killed mid-send, as test_delivery's SIGKILL
test does), while a whole request is checked and recorded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time

from tests.fixtures.webhooks import Receiver, running_receiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def signed_request(body: bytes, *, announced: int | None = None) -> bytes:
    msg_id, timestamp = "msg_1", str(int(time.time()))
    key = base64.b64decode(SECRET.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    head = (
        "POST /hooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body) if announced is None else announced}\r\n"
        f"webhook-id: {msg_id}\r\nwebhook-timestamp: {timestamp}\r\n"
        f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n\r\n"
    )
    return head.encode() + body


def send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # as a killed sender's kernel does: FIN after the bytes
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_a_body_cut_short_is_neither_a_delivery_nor_a_bad_signature() -> None:
    body = b'{"type": "order.placed", "data": {"id": 1}}'
    with running_receiver(Receiver(secrets=[SECRET])) as receiver:
        answer = send(receiver.port, signed_request(body[:10], announced=len(body)))
        assert answer == b""  # dropped unanswered: the sender retries
        assert receiver.received == []
        assert receiver.bad == []
        # The whole request, sent again, is checked and recorded.
        answer = send(receiver.port, signed_request(body))
        assert answer.startswith(b"HTTP/1.1 200")
        assert receiver.ids() == ["msg_1"]
        assert receiver.bad == []


def test_a_whole_body_with_a_wrong_signature_is_still_bad() -> None:
    body = b'{"type": "order.placed"}'
    tampered = signed_request(body).replace(body, b'{"type": "order.paid!!"}')
    with running_receiver(Receiver(secrets=[SECRET])) as receiver:
        send(receiver.port, tampered)
        assert receiver.bad == ["msg_1: ['no signature matches']"]
