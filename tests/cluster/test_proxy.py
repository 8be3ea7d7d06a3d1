"""nginx in front of the replicas, as shipped: the request id runs through both logs, the
client's address reaches the replicas and a forged one does not, /metrics stays private,
oversized requests stop at the proxy, and every replica gets its share."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import LocalCluster, read_json_lines

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def replica_lines(cluster: LocalCluster) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for replica in cluster.replicas():
        lines += read_json_lines(Path(replica["log"]))
    return lines


def until_logged(cluster: LocalCluster, request_id: str) -> list[dict[str, object]]:
    """The replicas flush their logs every half second."""
    for _ in range(50):
        found = [
            line for line in replica_lines(cluster) if line.get("http.request.id") == request_id
        ]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no replica logged {request_id}")


def nginx_line(cluster: LocalCluster, request_id: str) -> dict[str, object]:
    """nginx logs a request once it is finished with it (a refused body is read to its end
    first)."""
    for _ in range(50):
        found = [line for line in cluster.nginx_log() if line["request_id"] == request_id]
        if found:
            (line,) = found
            return line
        time.sleep(0.1)
    raise AssertionError(f"nginx did not log {request_id}")


def test_one_request_id_from_the_client_to_the_replica(cluster: LocalCluster) -> None:
    response = httpx.get(cluster.url + "/v1/products?limit=1", headers={"x-request-id": "mine"})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert request_id != "mine", "nginx makes the id; the client's is replaced"
    assert len(request_id) == 32, request_id
    proxied = nginx_line(cluster, request_id)
    assert proxied["status"] == 200
    assert proxied["path"] == "/v1/products", "the query string is not logged"
    (served,) = until_logged(cluster, request_id)
    assert served["message"] == "http_request"
    assert served["http.route"] == "/v1/products"
    ports = {replica["port"]: replica for replica in cluster.replicas()}
    assert int(str(proxied["upstream"]).rsplit(":", 1)[1]) in ports


def test_the_replicas_see_the_client_address_and_never_a_forged_one(
    cluster: LocalCluster,
) -> None:
    # The whole of 127/8 is loopback: a client on 127.0.0.2 is told apart from nginx (127.0.0.1).
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        response = client.get(
            cluster.url + "/v1/products?limit=1", headers={"x-forwarded-for": "203.0.113.9"}
        )
    assert response.status_code == 200, response.text
    proxied = nginx_line(cluster, response.headers["x-request-id"])
    assert proxied["client"] == "127.0.0.2"
    (served,) = until_logged(cluster, response.headers["x-request-id"])
    assert served["client.ip"] == "127.0.0.2", (
        f"the replica logged {served['client.ip']}: X-Forwarded-For from nginx (trusted) names the"
        " client; the address the client wrote (203.0.113.9) is dropped"
    )


@pytest.mark.parametrize(
    "path", ["/metrics", "/metrics/", "//metrics", "/METRICS", "/%6detrics", "/./metrics"]
)
def test_metrics_are_not_served_through_nginx(cluster: LocalCluster, path: str) -> None:
    response = httpx.get(cluster.url + path)
    assert response.status_code == 404, (path, response.status_code)
    assert "hotpath_" not in response.text


def test_each_replica_serves_metrics_with_the_token_only(cluster: LocalCluster) -> None:
    token = (cluster.run_dir / "prometheus" / "secrets" / "metrics_token").read_text()
    for replica in cluster.replicas():
        assert httpx.get(replica["url"] + "/metrics").status_code == 401
        scraped = httpx.get(
            replica["url"] + "/metrics", headers={"authorization": f"Bearer {token}"}
        )
        assert scraped.status_code == 200
        assert "http_server_request_duration_seconds" in scraped.text


def test_oversized_requests_stop_at_the_proxy(cluster: LocalCluster) -> None:
    body = httpx.post(cluster.url + "/v1/products", content=b"x" * (1024 * 1024 + 1))
    assert body.status_code == 413
    assert body.headers["content-type"] == "application/problem+json"
    assert body.json()["type"] == "urn:hotpath:problem:payload-too-large"
    header = httpx.get(cluster.url + "/v1/products", headers={"x-padding": "a" * 9000})
    assert header.status_code == 431
    assert header.json()["request_id"] == header.headers["x-request-id"]
    for refused in (body, header):
        line = nginx_line(cluster, refused.headers["x-request-id"])
        assert line["upstream"] == "", f"nginx passed it on: {line}"


def test_every_replica_gets_its_share(cluster: LocalCluster) -> None:
    ids = set()
    with httpx.Client() as client:
        for _ in range(30):
            ids.add(client.get(cluster.url + "/v1/products?limit=1").headers["x-request-id"])
    served = Counter(line["upstream"] for line in cluster.nginx_log() if line["request_id"] in ids)
    addresses = {f"127.0.0.1:{replica['port']}" for replica in cluster.replicas()}
    assert set(served) == addresses, f"30 requests went to {dict(served)}"
    assert min(served.values()) >= 5, f"30 requests went to {dict(served)}"
