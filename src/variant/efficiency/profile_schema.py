"""The types and ranges of a latency profile's fields (`budget.load_profile` calls
`profile_problem`): what the predictor and `check_profile` read, checked when the file is read,
so a damaged `--profile` is refused naming the field, not found as a KeyError in the predictor."""

from __future__ import annotations

from ..jsonfile import check_number


def profile_problem(profile: dict) -> str | None:
    """The first missing or ill-typed field of a `variant bench --profile` file, or None."""
    model, settings, scales = (profile.get(k) for k in ("model", "settings", "scales"))
    if not isinstance(model, dict) or not isinstance(settings, dict):
        return "it has no 'model' or 'settings' object"
    for key in ("depth", "width"):
        problem = check_number(model.get(key), f"model.{key}", integer=True, positive=True)
        if problem:
            return problem
    pn = model.get("patch_nums")
    if not isinstance(pn, list) or not pn or any(check_number(p, "p", integer=True,
                                                              positive=True) for p in pn):
        return f"model.patch_nums must be a list of positive integers, got {pn!r}"
    if not isinstance(settings.get("dtype"), str) or not isinstance(profile.get("device"), str):
        return "settings.dtype and device must be strings"
    for where, value, integer in (("rows", profile.get("rows"), True),
                                  ("settings.batch", settings.get("batch", 1), True),
                                  ("decoder_seconds", profile.get("decoder_seconds"), False)):
        problem = check_number(value, where, integer=integer, lo=0)
        if problem:
            return problem
    if profile["rows"] < 1:
        return "rows must be at least 1"
    if not isinstance(scales, list) or len(scales) != len(pn):
        return f"scales must list one entry per scale ({len(pn)}), got {scales!r:.60}"
    for k, scale in enumerate(scales):
        if not isinstance(scale, dict):
            return f"scales[{k}] must be an object"
        for key in ("seconds_per_layer", "overhead_seconds"):
            problem = check_number(scale.get(key), f"scales[{k}].{key}", lo=0)
            if problem:
                return problem
    return None
