"""`variant serve --ray`: the same service as a Ray Serve deployment.

Each replica builds its own `Service` (model, queue, worker) from the same `ServeOptions` and
serves the same FastAPI app; Ray's HTTP proxy routes requests among replicas, and with
`--replicas MIN-MAX` Ray's autoscaler adds and removes them by ongoing requests. Replicas are
stateless: a request's images depend only on the request, so any replica may answer it. On
SIGTERM or Ctrl+C the deployment shuts down through Ray (each replica drains as the single
server does) and the local Ray instance stops.
"""

from __future__ import annotations

import signal
import threading

import ray
from ray import serve

from .app import create_app
from .service import ServeOptions, build_service


@serve.ingress()
class VariantReplica:
    """One replica: a service of its own behind the server's app."""

    def __init__(self, options: ServeOptions, api_key: str | None):
        self.service = build_service(options)
        self.service.replica = serve.get_replica_context().replica_tag
        self.service.start()
        self.api_key = api_key

    def __serve_build_asgi_app__(self):
        return create_app(self.service, api_key=self.api_key, manage_worker=False)

    def __del__(self):  # Ray calls it when the replica shuts down
        self.service.stop()


def replica_options(replicas: str, device: str) -> dict:
    """Deployment options: a fixed number of replicas ('2') or autoscaling bounds ('1-4')."""
    low, _, high = replicas.partition("-")
    try:
        low_n, high_n = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"--replicas must be N or MIN-MAX, e.g. 2 or 1-4; got {replicas!r}."
                         ) from None
    if not 1 <= low_n <= high_n:
        raise ValueError(f"--replicas needs 1 <= MIN <= MAX, got {replicas!r}.")
    # CPU replicas share the machine's cores (torch threads set by --threads); a GPU replica
    # holds one GPU
    actor = {"num_gpus": 1} if device.startswith("cuda") else {"num_cpus": 0}
    if low_n == high_n:
        return {"num_replicas": low_n, "ray_actor_options": actor}
    return {"ray_actor_options": actor, "autoscaling_config": {
        "min_replicas": low_n, "max_replicas": high_n, "target_ongoing_requests": 4}}


def run(options: ServeOptions, *, replicas: str, host: str, port: int,
        api_key: str | None) -> int:
    """Start a local Ray instance and the deployment; serve until SIGTERM or Ctrl+C."""
    deployment_options = replica_options(replicas, options.device)
    # Ray's own services listen beyond loopback whatever --host says (docs/SERVING.md)
    ray.init(include_dashboard=False, logging_level="warning", log_to_driver=False)
    stop = threading.Event()  # set by SIGTERM or Ctrl+C (after ray.init, which sets its own),
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the app can answer /readyz
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        deployment = serve.deployment(VariantReplica, name="variant", **deployment_options)
        serve.run(deployment.bind(options, api_key), name="variant", route_prefix="/",
                  blocking=False)
        print(f"variant serve: ready at http://{host}:{port} on Ray Serve ({replicas} "
              "replicas; SIGTERM or Ctrl+C stops)", flush=True)
        stop.wait()
        serve.shutdown()
    finally:
        ray.shutdown()
    return 0
