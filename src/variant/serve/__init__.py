"""`variant serve`: an image server that trades depth for latency under load.

    schema.py     the request body: reading and checking it, and the server's limits
    scheduler.py  the queue, batches of one configuration, admission (429/503), draining
    policy.py     `auto`: the best front configuration whose predicted time keeps the queue
                  within the SLO, with predicted times corrected online by observed ones
    engine.py     the model: one request's images through the public sampler, its PNGs and
                  the `variant sample` command that writes the same bytes
    metrics.py    Prometheus metrics (a registry per server)
    app.py        the HTTP layer (FastAPI): /v1/images, /v1/configurations, /healthz, /readyz,
                  /metrics; body limit and bearer-token auth
    service.py    the pieces wired together, the worker thread, uvicorn with draining on SIGTERM
    ray_app.py    the same service as a Ray Serve deployment (`variant serve --ray`)

Needs the optional `serve` extra (FastAPI, uvicorn, prometheus_client); Ray needs `ray`.
"""
