"""`variant serve` as a real process on loopback: endpoints, auth, reproducibility, faults."""

import base64
import io
import json
import shlex
import socket
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image
from serve_helpers import API_KEY, FRONT, ServerProcess

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The built-in model with the committed front; a generous SLO (auto never refuses here),
    --max-wait 0.25 s so that requests sent together share a batch."""
    folder = tmp_path_factory.mktemp("serve")
    key = folder / "key"
    key.write_text(API_KEY + "\n")
    proc = ServerProcess(["--front", str(FRONT), "--slo", "60s", "--max-wait", "250ms",
                          "--max-images", "4", "--max-batch", "8", "--max-body", "2KiB",
                          "--max-queue", "8"], folder / "log", key).wait_ready()
    yield proc
    assert proc.stop() == 0, proc.log.read_text()


def post(server, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + "/v1/images", content=data, headers=server.headers,
                      timeout=60, **kw)


def pngs(response) -> dict[str, bytes]:
    return {im["name"]: base64.b64decode(im["png_base64"]) for im in response.json()["images"]}


def test_probes_auth_and_configurations(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"},
                    {"Authorization": API_KEY}):
        r = httpx.get(server.url + "/v1/configurations", headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert post(server, {"labels": [1]}, ).status_code == 200
    assert httpx.post(server.url + "/v1/images", json={"labels": [1]}).status_code == 401
    info = httpx.get(server.url + "/v1/configurations", headers=server.headers).json()
    assert info["default_configuration"] == "auto" and info["slo_s"] == 60
    assert len(info["configurations"]) == 15 and info["class_names"][0] == "disc"
    full = next(c for c in info["configurations"] if c["spec"] == "full")
    assert full["quality"]["metric"] == "fid" and full["measured"]["batch"] == 16
    assert full["predicted_s_per_image"] > 0


def test_an_image_response(server):
    r = post(server, {"labels": ["disc", 3], "num_images": 3, "seed": 5,
                      "configuration": "d4+cfgstop4"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["configuration"] == "d4+cfgstop4" and data["labels"] == [0, 3, 0]
    assert data["quality"]["mean"] == pytest.approx(4.874, abs=1e-3)
    assert data["kv_peak_bytes"] > 0 and data["run_s"] > 0 and data["queue_s"] >= 0
    assert [im["name"] for im in data["images"]] == ["000000_class0.png", "000001_class3.png",
                                                    "000002_class0.png"]
    image = Image.open(io.BytesIO(pngs(r)["000001_class3.png"]))
    assert image.size == (64, 64) and image.format == "PNG"
    assert "--rng per-image" in data["command"] and "/" not in data["command"].split("--out")[0]


def _send_together(server, bodies):
    out = [None] * len(bodies)

    def send(i):
        out[i] = post(server, bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("rng", ["per-image", "batch"])
def test_same_request_alone_and_batched_gives_the_commands_bytes(server, tmp_path, rng):
    request = {"labels": [2, 7], "seed": 11, "configuration": "full+cfgstop4", "rng": rng}
    alone = post(server, request)
    assert alone.json()["batch"]["requests"] == 1
    others = [{"labels": [4], "num_images": 3, "seed": 1, "configuration": "full+cfgstop4",
               "rng": rng}, {"labels": [9, 2], "seed": 11 + 1, "configuration":
                             "full+cfgstop4", "rng": rng}]
    batched = _send_together(server, [others[0], request, others[1]])[1]
    assert batched.json()["batch"]["requests"] >= 2  # it shared its batch
    assert pngs(batched) == pngs(alone)
    command = shlex.split(alone.json()["command"])
    assert command[:2] == ["variant", "sample"]
    subprocess.run([sys.executable, "-m", "variant", *command[1:]], cwd=tmp_path, check=True,
                   capture_output=True)
    written = {name: (tmp_path / "images" / name).read_bytes() for name in pngs(alone)}
    assert written == pngs(alone)


@pytest.mark.parametrize("body, status, message", [
    ('{"labels": [1', 400, "not JSON"),
    ('[1, 2]', 400, "must be a JSON object"),
    ({"labels": ["unicorn"]}, 400, "unknown class 'unicorn'"),
    ({"labels": [42]}, 400, "class 42 does not exist"),
    ({"num_images": 5}, 400, "limit of 4 images per request (--max-images)"),
    ({"num_images": 0}, 400, "num_images must be an integer >= 1"),
    ({"configuration": "d99"}, 400, "configuration"),
    ({"configuration": "full+turbo"}, 400, "unknown lever 'turbo'"),
    ({"configuration": "../../etc/passwd"}, 400, "configuration"),
    ({"model": "/etc/passwd"}, 400, "unknown field(s) 'model'"),
    ({"seed": -1}, 400, "seed must be an integer"),
    ({"top_p": 2}, 400, "top_p"),
    ({"cfg": 3.0}, 400, "auto: budgets pick from the measured front"),
    ("x" * 3000, 413, "over this server's limit of 2048 bytes (--max-body)"),
])
def test_bad_requests_are_4xx_naming_the_problem(server, body, status, message):
    r = post(server, body)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert post(server, {"labels": [1], "configuration": "d2"}).status_code == 200


def _runs(server, spec: str) -> float:
    text = httpx.get(server.url + "/metrics", headers=server.headers).text
    key = f'variant_serve_run_seconds_count{{configuration="{spec}"}} '
    return float(text.split(key)[1].split()[0]) if key in text else 0.0


def test_a_client_that_disconnects_costs_nothing_queued(server):
    body = json.dumps({"labels": [1], "configuration": "d2", "seed": 99}).encode()
    runs = _runs(server, "d2")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {API_KEY}\r\n".encode()
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.05)  # it waits --max-wait (0.25 s) for its batch: gone before
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = httpx.get(server.url + "/metrics", headers=server.headers).text
        if 'configuration="d2",outcome="disconnected"' in text:
            break
        time.sleep(0.1)
    assert 'configuration="d2",outcome="disconnected"} 1.0' in text
    assert "variant_serve_queue_requests 0.0" in text
    assert _runs(server, "d2") == runs  # it never ran
    assert post(server, {"labels": [1], "configuration": "d2"}).status_code == 200


def test_metrics_count_outcomes_latency_batches_and_kv(server):
    """Labels stay bounded: a made-up configuration counts as "other"."""
    post(server, {"labels": [1], "configuration": "full"})
    post(server, {"labels": [1], "configuration": "d3"})  # off the front and the paper's plans
    post(server, {"labels": ["unicorn"]})  # counted under "-": no configuration read yet
    post(server, {"cfg": 3.0})  # auto at settings the front was not measured with
    text = httpx.get(server.url + "/metrics", headers=server.headers).text
    for needle in ('variant_serve_requests_total{configuration="full",outcome="ok"}',
                   'variant_serve_requests_total{configuration="other",outcome="ok"}',
                   'variant_serve_requests_total{configuration="auto",outcome="bad_request"}',
                   'outcome="bad_request"', "variant_serve_request_seconds_bucket",
                   "variant_serve_batch_images_bucket", "variant_serve_queue_images",
                   "variant_serve_kv_peak_bytes", "variant_serve_predicted_seconds_per_image"):
        assert needle in text, needle
    kv = float(text.split("\nvariant_serve_kv_peak_bytes ")[1].split()[0])
    assert kv > 0


def test_a_short_bounded_load_run_loses_nothing(server, tmp_path):
    sys.path.insert(0, str(FRONT.parents[3] / "benchmarks"))
    import serve_load

    key = tmp_path / "key"
    key.write_text(API_KEY)
    out = tmp_path / "load.json"
    code = serve_load.main(["--url", server.url, "--rates", "6", "--duration", "2",
                            "--max-requests", "12", "--images", "1", "--slo", "60",
                            "--configuration", "auto", "--api-key-file", str(key),
                            "--pause", "0", "--out", str(out)])
    run = json.loads(out.read_text())["runs"][0]
    assert code == 0 and run["lost"] == 0 and 0 < run["sent"] <= 12
    assert run["with_images"] == run["sent"] and run["errors"] == 0
    assert sum(run["configurations"].values()) == run["sent"]
    assert run["p50_s"] <= run["p95_s"] <= run["p99_s"] and run["mean_quality"] > 0
