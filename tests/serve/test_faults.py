"""SIGTERM mid-batch, the auth rules of `variant serve`, and the up-front memory refusal."""

import threading
import time

import pytest
from serve_helpers import ServerProcess

from variant import load_model
from variant.cli.checks import is_loopback
from variant.cli.main import main
from variant.cli.serve import read_api_key
from variant.sampling.settings import SamplingConfig
from variant.serve.engine import Engine
from variant.serve.schema import ImageRequest, RequestError

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")


def test_sigterm_answers_the_running_batch_and_503s_the_queue(tmp_path):
    server = ServerProcess(["--max-images", "16", "--max-batch", "16", "--max-wait", "0",
                            "--drain-timeout", "20s"], tmp_path / "log").wait_ready()
    answers = {}

    def send(name, body):
        answers[name] = httpx.post(server.url + "/v1/images", json=body, timeout=60)

    # the running batch: 16 images of the slowest configuration (about 1 s on one thread)
    running = threading.Thread(target=send, args=("running", {
        "num_images": 16, "configuration": "full+kv1,2", "seed": 1}))
    running.start()
    deadline = time.monotonic() + 10
    while "variant_serve_batch_images_count 1.0" not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline, "the first batch never started"
        time.sleep(0.02)
    queued = [threading.Thread(target=send, args=(f"queued{i}", {
        "num_images": 16, "configuration": "full", "seed": i})) for i in range(2)]
    for t in queued:
        t.start()
    # both wait behind the running batch (16 images each: one batch each)
    while "variant_serve_queue_requests 2.0" not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline, "the two requests never queued"
        time.sleep(0.02)
    sent_at = time.monotonic()
    server.terminate()
    code = server.proc.wait(30)
    took = time.monotonic() - sent_at
    for t in (running, *queued):
        t.join(30)
    assert code == 0, server.log.read_text()
    assert took < 20, took
    assert answers["running"].status_code == 200
    assert len(answers["running"].json()["images"]) == 16
    for name in ("queued0", "queued1"):
        r = answers[name]
        assert r.status_code == 503 and "shutting down" in r.json()["error"], r.text


def test_a_public_host_needs_an_api_key_or_insecure(capsys, tmp_path):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--api-key-file" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("abc")
    assert main(["serve", "--host", "0.0.0.0", "--api-key-file", str(short)]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert main(["serve", "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "cannot read --api-key-file" in capsys.readouterr().err
    assert read_api_key(None, "0.0.0.0", insecure=True) is None
    assert read_api_key(None, "127.0.0.1", insecure=False) is None
    key = tmp_path / "key"
    key.write_text("  0123456789abcdef0123\n")
    assert read_api_key(str(key), "10.0.0.5", insecure=False) == "0123456789abcdef0123"
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_bad_flags_are_clear_errors(capsys):
    assert main(["serve", "--slo", "2s"]) == 2
    assert "--slo applies to `auto`" in capsys.readouterr().err
    assert main(["serve", "--max-images", "32", "--max-batch", "16"]) == 2
    assert "must not exceed --max-batch" in capsys.readouterr().err
    assert main(["serve", "--replicas", "2"]) == 2
    assert "applies to --ray" in capsys.readouterr().err


def test_requests_over_max_memory_are_refused_up_front():
    var, vae = load_model("builtin")
    engine = Engine(var, vae, max_memory=64 * 2**20)  # less than the weights and runtime
    config = engine.configuration("full", SamplingConfig(rng="per-image", seed=0))
    with pytest.raises(RequestError) as err:
        engine.check_memory(config, 4)
    assert err.value.status == 422 and "--max-memory of 64.0 MiB" in err.value.message
    Engine(var, vae, max_memory=2**40).check_memory(config, 4)  # fits


def test_commands_name_no_server_path(tmp_path):
    var, vae = load_model("builtin")
    folder = tmp_path / "secret" / "my-model"
    folder.mkdir(parents=True)
    engine = Engine(var, vae, source=str(folder))
    request = ImageRequest((1,), 0, "full", SamplingConfig(rng="per-image", seed=0))
    command = engine.command(request, engine.configuration("full", request.settings))
    assert "--model my-model" in command and "secret" not in command
