"""`variant serve --ray --replicas 2`: a local Ray instance, two replicas on loopback, Ray's
own routing. Skipped with its reason where Ray Serve is not installed or cannot start."""

import base64
import json
import threading
import time

import pytest
from serve_helpers import ServerProcess

httpx = pytest.importorskip("httpx")
pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install -e '.[ray]')")


@pytest.mark.slow
def test_two_replicas_answer_the_same_request_with_the_same_bytes(tmp_path):
    server = ServerProcess(["--ray", "--replicas", "2"], tmp_path / "log")
    try:
        server.wait_ready(timeout=120)
    except RuntimeError as err:
        server.stop()
        pytest.skip(f"Ray could not start here: {str(err)[-300:]}")
    try:
        request = {"labels": [3, 6], "seed": 4, "configuration": "d4+cfgstop4"}
        answers = []

        def send():
            answers.append(httpx.post(server.url + "/v1/images", json=request, timeout=120))

        deadline = time.monotonic() + 60
        replicas = set()
        while len(replicas) < 2 and time.monotonic() < deadline:
            threads = [threading.Thread(target=send) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            replicas = {r.json()["replica"] for r in answers if r.status_code == 200}
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        assert len(replicas) == 2, replicas  # Ray routed to both
        images = {json.dumps([base64.b64decode(i["png_base64"]).hex() for i in
                              r.json()["images"]]) for r in answers}
        assert len(images) == 1  # stateless replicas: the request alone decides the bytes
    finally:
        code = server.stop(timeout=90)
    assert code == 0, server.log.read_text()[-2000:]
