"""A `variant serve` process on loopback for the tests, and what they share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

FRONT = Path(__file__).resolve().parents[2] / "docs" / "reproduction" / "front" / "front.json"
API_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m variant serve ARGS --port P` until `stop`; `url`, `headers` for httpx."""

    def __init__(self, args: list[str], log: Path, api_key_file: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {}
        argv = [sys.executable, "-m", "variant", "serve", "--port", str(self.port),
                "--threads", "1", *args]
        if api_key_file is not None:
            argv += ["--api-key-file", str(api_key_file)]
            self.headers = {"Authorization": f"Bearer {api_key_file.read_text().strip()}"}
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                     env=env)

    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"variant serve exited {self.proc.returncode}:\n"
                                   + self.log.read_text())
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("variant serve did not become ready:\n" + self.log.read_text())

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
