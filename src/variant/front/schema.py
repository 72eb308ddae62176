"""The types and ranges of a `front.json`'s fields (`front.load_front` calls `front_field_problem`).

A front is read by the planner, the studio and the figure, which print its numbers and print
`variant sample` commands from its specs: a string where a cost belongs, a negative or NaN cost,
a timing batch of 0 or a spec this model cannot run must be refused when the file is read, with
the field named, not found later as a traceback or a "-62 ms" on screen.
"""

from __future__ import annotations

from ..jsonfile import check_number

_META_INTS = ("threads", "bench_batch", "num_per_class", "num_classes", "depth", "num_scales")
# Far beyond any VAR (depth 30, 10 scales at 256 px, 13 at 512), and small enough that the spec
# checks, which build each row's plan, stay instant: a depth of 10**20 would never finish.
_META_MAX = {"depth": 1024, "num_scales": 64}
_META_STRS = ("model", "device_name", "metric", "metric_key")
_COST_NUMBERS = ("total_s", "total_q1_s", "total_q3_s", "kv_peak_bytes", "peak_memory_bytes",
                 "gflops_per_image")


def _meta_problem(meta: dict) -> str | None:
    for key in _META_STRS:
        if not isinstance(meta[key], str) or not meta[key]:
            return f"meta.{key} must be a non-empty string, got {meta[key]!r}"
    for key in _META_INTS:
        problem = check_number(meta[key], f"meta.{key}", integer=True, positive=True)
        if problem:
            return problem
        if meta[key] > _META_MAX.get(key, meta[key]):
            return f"meta.{key} {meta[key]} is beyond any model (at most {_META_MAX[key]})"
    seeds = meta["seeds"]
    if not isinstance(seeds, list) or not seeds or any(
            check_number(s, "seed", integer=True) for s in seeds):
        return f"meta.seeds must be a non-empty list of integers, got {seeds!r}"
    for key in ("width",):
        problem = check_number(meta.get(key), f"meta.{key}", integer=True, positive=True,
                               optional=True)
        if problem:
            return problem
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                   and all(c in "0123456789abcdef" for c in digest)):
        return f"meta.weights_sha256 must be 64 lowercase hex digits, got {digest!r}"
    pn = meta.get("patch_nums")
    if pn is not None and (not isinstance(pn, list) or len(pn) != meta["num_scales"] or any(
            check_number(p, "p", integer=True, positive=True) for p in pn)):
        return (f"meta.patch_nums must list {meta['num_scales']} positive integers (one per "
                f"scale), got {pn!r}")
    return None


def _row_problem(row: dict, name: str, key: str) -> str | None:
    quality = row["quality"][key]
    for part in ("mean", "low", "high"):
        problem = check_number(quality[part], f"{name}.quality.{key}.{part}", optional=True)
        if problem:
            return problem
    for part in _COST_NUMBERS:
        problem = check_number(row["cost"][part], f"{name}.cost.{part}", lo=0, optional=True)
        if problem:
            return problem
    return None


def _spec_problem(spec: str, name: str, meta: dict, settings) -> str | None:
    """The spec must be a configuration the front's model can run (it is printed as a command)."""
    from ..sampling.configuration import Configuration  # sampling imports front: no cycle

    patch_nums = meta.get("patch_nums") or list(range(1, meta["num_scales"] + 1))
    try:
        Configuration.resolve(spec, meta["depth"], patch_nums, settings)
    except ValueError as err:
        return (f"{name}'s spec {spec!r} is not a configuration of its {meta['depth']}-layer, "
                f"{meta['num_scales']}-scale model ({str(err).rstrip('.')})")
    return None


def front_field_problem(data: dict, settings) -> str | None:
    """The first field of a (structurally complete) front with a wrong type, range or value."""
    meta = data["meta"]
    problem = _meta_problem(meta)
    if problem:
        return problem
    key = meta["metric_key"]
    for i, row in enumerate(data["rows"]):
        name = f"rows[{i}] ({row['spec']})"
        problem = _row_problem(row, name, key) or _spec_problem(row["spec"], name, meta, settings)
        if problem:
            return problem
    return None
