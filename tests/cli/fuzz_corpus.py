"""A corpus of bad `variant` invocations (issue 18), each with the words its error must name.

Every case must exit with code 2, print no traceback, name the flag or file at fault (the
second field: text the error message must contain) and create or change no file. Paths are
templates: {W} is the test's working folder (prepared by `prepare`), {X} a folder outside it.
Grouped by the issue's classes; the cases after each class come from the same kinds of input.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRONT = REPO / "docs" / "reproduction" / "front" / "front.json"  # builtin: depth 8, 6 scales

S = ["sample", "--model", "random:tiny", "--num", "1"]  # a sampling run on a tiny model
P = ["plan", "--depth", "8"]
T = ["tune", "--model", "random:tiny", "--out", "{W}/tune"]


def _front_variants() -> dict[str, object]:
    """name -> content of damaged copies of the committed front."""
    good = json.loads(FRONT.read_text())

    def damaged(change) -> dict:
        front = json.loads(json.dumps(good))
        change(front)
        return front

    return {
        "front.json": good,
        "front_strcost.json": damaged(lambda f: f["rows"][0]["cost"].update(total_s="fast")),
        "front_bb0.json": damaged(lambda f: f["meta"].update(bench_batch=0)),
        "front_negcost.json": damaged(lambda f: f["rows"][1]["cost"].update(total_s=-0.062)),
        "front_negkv.json": damaged(lambda f: f["rows"][2]["cost"].update(kv_peak_bytes=-5)),
        "front_badspec.json": damaged(lambda f: f["rows"][0].update(spec="d99")),
        "front_garbagespec.json": damaged(lambda f: f["rows"][3].update(spec="d4+warp9")),
        "front_boolthreads.json": damaged(lambda f: f["meta"].update(threads=True)),
        "front_floatdepth.json": damaged(lambda f: f["meta"].update(depth=8.5)),
        "front_strmean.json": damaged(lambda f: f["rows"][0]["quality"]["fid"].update(mean="4")),
        "front_quality_list.json": damaged(lambda f: f["rows"][0].update(quality=[1, 2])),
        "front_rows_dict.json": damaged(lambda f: f.update(rows={"a": 1})),
        "front_settings_list.json": damaged(lambda f: f["meta"].update(settings=[1])),
        "front_seeds_str.json": damaged(lambda f: f["meta"].update(seeds="0 1 2")),
        "front_nometa.json": damaged(lambda f: f.pop("meta")),
        "front_list.json": [1, 2, 3],
        "front_d30.json": damaged(lambda f: f["meta"].update(depth=30, num_scales=10)),
        "front_otherweights.json": damaged(lambda f: f["meta"].update(weights_sha256="0" * 64)),
        "front_badhash.json": damaged(lambda f: f["meta"].update(weights_sha256="xyz")),
    }


def prepare(work: Path) -> None:
    """The files the corpus reads, all inside `work`."""
    for name, content in _front_variants().items():
        (work / name).write_text(json.dumps(content))
    text = FRONT.read_text()
    (work / "front_nan.json").write_text(text.replace('"total_s": ', '"total_s": NaN, "x": ', 1))
    (work / "front_inf.json").write_text(text.replace('"kv_peak_bytes": ',
                                                      '"kv_peak_bytes": Infinity, "x": ', 1))
    (work / "front_truncated.json").write_text(text[: len(text) // 2])
    (work / "front_latin1.json").write_bytes(b'{"format": "\xe9"}')
    (work / "empty.json").write_text("")
    (work / "adir").mkdir()
    (work / "afile").write_text("a file, not a folder\n")
    profile = {"format": "variant-latency-profile", "version": 1,
               "model": {"depth": 30, "width": 1920, "patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13,
                                                                   16]},
               "device": "cpu", "settings": {"dtype": "bf16", "batch": 1, "cfg": 1.5}, "rows": 2,
               "scales": [{"seconds_per_layer": 0.01, "overhead_seconds": 0.0}] * 10,
               "decoder_seconds": 0.5}
    for name, change in (("profile_noscales", lambda p: p.pop("scales")),
                         ("profile_strdecoder", lambda p: p.update(decoder_seconds="slow")),
                         ("profile_negrows", lambda p: p.update(rows=-2)),
                         ("profile_fewscales", lambda p: p.update(scales=p["scales"][:3])),
                         ("profile_nomodel", lambda p: p.update(model=[30]))):
        damaged = json.loads(json.dumps(profile))
        change(damaged)
        (work / f"{name}.json").write_text(json.dumps(damaged))
    (work / "profile_list.json").write_text("[1, 2]")
    for name, file, text in (("tune_corrupt", "tune.json", "{bad"),
                             ("tune_badfront", "front.json", "[]"),
                             ("tune_nanfront", "front.json", '{"format": NaN}'),
                             ("search_list", "search.json", "[1]"),
                             ("search_corrupt", "search.json", "{bad")):
        (work / name).mkdir()
        (work / name / file).write_text(text)
    model = work / "model_eight"  # a model directory whose config.json has "depth": "eight"
    model.mkdir()
    config = json.loads((REPO / "src/variant/assets/builtin/config.json").read_text())
    config["var"]["depth"] = "eight"
    (model / "config.json").write_text(json.dumps(config))
    shallow = work / "model_depth4"  # config.json says depth 4, the weights have 8 layers
    shutil.copytree(REPO / "src/variant/assets/builtin", shallow)
    config = json.loads((shallow / "config.json").read_text())
    config["var"]["depth"] = 4
    (shallow / "config.json").write_text(json.dumps(config))
    badjson = work / "model_badjson"
    badjson.mkdir()
    (badjson / "config.json").write_text("{\"format\": ")


def _writes() -> list[tuple[list[str], str]]:
    """Writes where it should not: outputs checked before any work."""
    return [
        ([*S, "--out", ""], "--out"),
        ([*S, "--out", "   "], "--out"),
        ([*S, "--out", "{W}/adir"], "--out"),
        ([*S, "--out", "{W}/adir/"], "--out"),
        ([*S, "--out", "{W}/a.jpg"], "--out"),
        ([*S, "--out", "{W}/noext"], "--out"),
        ([*S, "--out", "{W}/afile/x.png"], "--out"),
        ([*S, "--out", "/proc/forbidden/x.png"], "--out"),
        ([*S, "--out", "{X}/o.png", "--json", "{W}/adir"], "--json"),
        ([*S, "--out", "{X}/o.png", "--json", "{W}/a.txt"], "--json"),
        ([*S, "--out", "{X}/o.png", "--json", ""], "--json"),
        ([*S, "--out", "{X}/o.png", "--npz", "{W}/x.png"], "--npz"),
        ([*S, "--out", "{X}/o.png", "--npz", "{W}/adir"], "--npz"),
        ([*S, "--out", "{X}/o.png", "--save-each", "{W}/afile"], "--save-each"),
        ([*S, "--out", "{X}/o.png", "--save-each", ""], "--save-each"),
        ([*T, "--show-grid", "--out", ""], "--out"),
        ([*T, "--out", "{W}/afile"], "--out"),
        (["tune", "--model", "random:tiny", "--out", "{W}/afile/sub"], "--out"),
        (["demo", "--out", ""], "--out"),
        (["demo", "--out", "{W}/afile"], "--out"),
        (["eval", "--model", "random:tiny", "--out", ""], "--out"),
        (["eval", "--model", "random:tiny", "--out", "{X}/e", "--save-reference-stats",
          "{W}/s.json"], "--save-reference-stats"),
        (["analyze", "asymmetry", "--model", "random:tiny", "--out", ""], "--out"),
        (["analyze", "asymmetry", "--model", "random:tiny", "--out", "{X}/a", "--plot",
          "{W}/a.svg"], "--plot"),
        (["analyze", "asymmetry", "--model", "random:tiny", "--out", "{X}/a", "--json",
          "{W}/adir"], "--json"),
        (["train-metric", "--out", ""], "--out"),
        (["train-tokenizer", "--out", "{W}/afile"], "--out"),
        (["tokenize", "--data", "procedural", "--out", ""], "--out"),
        (["bench", "--model", "random:tiny", "--json", "{W}/adir"], "--json"),
        (["bench", "--model", "random:tiny", "--plot", "{W}/p.jpg"], "--plot"),
        ([*P, "--json", ""], "--json"),
        ([*P, "--json", "{W}/adir"], "--json"),
        ([*P, "--json", "{W}/rows.csv"], "--json"),
    ]


def _false_advice() -> list[tuple[list[str], str]]:
    """Printed advice that is false: flags that do not apply, fronts of other models."""
    return [
        (["plan", "--front", "{W}/front.json", "--max-kv", "1MiB", "--dtype", "bf16"], "--dtype"),
        (["plan", "--front", "{W}/front.json", "--max-kv", "1MiB", "--no-cfg"], "--no-cfg"),
        (["plan", "--front", "{W}/front.json", "--max-kv", "1MiB", "--depth", "30"], "--depth"),
        (["plan", "--front", "{W}/front.json", "--max-kv", "1MiB", "--json", "{X}/r.json"],
         "--json"),
        (["plan", "--front", "{W}/front.json", "--max-kv", "1MiB", "--model", "random:tiny"],
         "another architecture"),
        (["plan", "--front", "{W}/front.json", "--max-kv", "1MiB", "--allow-other-model"],
         "--model"),
        (["plan", "--front", "{W}/front_d30.json", "--max-kv", "1MiB", "--model", "builtin"],
         "another architecture"),
        (["plan", "--front", "{W}/front_otherweights.json", "--max-kv", "1MiB", "--model",
          "builtin"], "--allow-other-model"),
        (["plan", "--front", "{W}/front_badhash.json", "--max-kv", "1MiB"], "weights_sha256"),
        (["plan", "--model", "builtin", "--depth", "8"], "--depth"),
        (["studio", "--allow-other-model"], "--front"),
    ]


def _numbers_devices_models() -> list[tuple[list[str], str]]:
    """Work done, then a traceback: numbers, devices and models checked first."""
    return [
        ([*S, "--cfg", "nan"], "--cfg"),
        ([*S, "--cfg", "inf"], "--cfg"),
        ([*S, "--cfg", "-1"], "--cfg"),
        ([*S, "--top-p", "2"], "--top-p"),
        ([*S, "--top-p", "nan"], "--top-p"),
        ([*S, "--top-k", "-1"], "--top-k"),
        ([*S, "--top-k", "1.5"], "--top-k"),
        ([*S, "--device", "tpu"], "--device"),
        ([*S, "--device", ""], "--device"),
        ([*S, "--device", "cuda:99"], "--device"),
        ([*S, "--batch-size", "0"], "--batch-size"),
        ([*S, "--num", "100000000", "--batch-size", "100000000"], "--batch-size"),
        ([*S, "--num", "-1"], "--num"),
        ([*S, "--labels", "-1"], "--labels"),
        ([*S, "--labels", "99"], "--labels"),
        ([*S, "--seed", "-1"], "--seed"),
        ([*S, "--bridge", "-1"], "--bridge"),
        ([*S, "--bridge", "99", "--plan", "d2"], "bridge"),
        ([*S, "--cfg-stop", "-1"], "cfg_stop"),
        ([*S, "--cfg-stop", "9" * 5000], "--cfg-stop"),
        ([*S, "--prune", "2@2"], "prune"),
        ([*S, "--prune", "abc"], "prune"),
        ([*S, "--kv-keep", "-1,2"], "--kv-keep"),
        ([*S, "--kv-keep=-1,2"], "kv_keep"),
        ([*S, "--kv-keep", "a"], "kv_keep"),
        ([*S, "--kv-precision", "int4"], "unknown KV precision 'int4'"),
        ([*S, "--kv-precision", "int8@9"], "first quantised scale must be in 0..2"),
        ([*S, "--kv-precision", "@2"], "cannot read kv_precision"),
        ([*S, "--plan", "full+kv8", "--kv-precision", "fp8"], "kv_precision"),
        ([*S, "--guide-plan", "d99"], "guide plan"),
        ([*S, "--guide-class", "foo"], "--guide-class"),
        ([*S, "--dtype", "fp8"], "--dtype"),
    ]


def _damaged_files() -> list[tuple[list[str], str]]:
    """Work done, then a traceback: damaged models, fronts and profiles."""
    return [
        ([*S, "--model", "{W}/model_eight"], "config.json"),
        ([*S, "--model", "{W}/model_badjson"], "config.json"),
        ([*S, "--model", "{W}/model_depth4"], "config.json disagrees with its weights"),
        ([*S, "--model", "{W}/adir"], "adir"),
        (["tune", "--model", "random:tiny", "--threads", "-1", "--out", "{X}/t"], "--threads"),
        (["bench", "--model", "random:tiny", "--threads", "0"], "--threads"),
        (["bench", "--model", "random:tiny", "--repeats", "0"], "--repeats"),
        (["bench", "--model", "random:tiny", "--warmup", "-1"], "--warmup"),
        (["studio", "--port", "99999"], "--port"),
        (["studio", "--port", "-1"], "--port"),
        (["studio", "--max-images", "0"], "--max-images"),
        (["studio", "--max-memory", "lots"], "--max-memory"),
        (["studio", "--front", "{W}/adir"], "--front"),
        (["studio", "--profile", "{W}/nope.json"], "--profile"),
        (["plan", "--front", "{W}/front_strcost.json", "--max-kv", "1GiB"],
         "rows[0] (full).cost.total_s"),
        (["plan", "--front", "{W}/front_bb0.json", "--max-kv", "1GiB"], "meta.bench_batch"),
        (["plan", "--front", "{W}/front_negcost.json", "--max-kv", "1GiB"], "total_s"),
        (["plan", "--front", "{W}/front_negkv.json", "--max-kv", "1GiB"], "kv_peak_bytes"),
        (["plan", "--front", "{W}/front_nan.json", "--max-kv", "1GiB"], "front_nan.json"),
        (["plan", "--front", "{W}/front_inf.json", "--max-kv", "1GiB"], "front_inf.json"),
        (["plan", "--front", "{W}/front_badspec.json", "--max-kv", "1GiB"], "'d99'"),
        (["plan", "--front", "{W}/front_garbagespec.json", "--max-kv", "1GiB"], "d4+warp9"),
        (["plan", "--front", "{W}/front_boolthreads.json", "--max-kv", "1GiB"], "meta.threads"),
        (["plan", "--front", "{W}/front_floatdepth.json", "--max-kv", "1GiB"], "meta.depth"),
        (["plan", "--front", "{W}/front_strmean.json", "--max-kv", "1GiB"], "fid.mean"),
        (["plan", "--front", "{W}/front_quality_list.json", "--max-kv", "1GiB"], "row 0"),
        (["plan", "--front", "{W}/front_rows_dict.json", "--max-kv", "1GiB"],
         "front_rows_dict.json"),
        (["plan", "--front", "{W}/front_settings_list.json", "--max-kv", "1GiB"], "settings"),
        (["plan", "--front", "{W}/front_seeds_str.json", "--max-kv", "1GiB"], "meta.seeds"),
        (["plan", "--front", "{W}/front_nometa.json", "--max-kv", "1GiB"], "'meta'"),
        (["plan", "--front", "{W}/front_list.json", "--max-kv", "1GiB"], "front_list.json"),
        (["plan", "--front", "{W}/front_truncated.json", "--max-kv", "1GiB"],
         "front_truncated.json"),
        (["plan", "--front", "{W}/front_latin1.json", "--max-kv", "1GiB"], "front_latin1.json"),
        (["plan", "--front", "{W}/empty.json", "--max-kv", "1GiB"], "empty.json"),
        (["plan", "--front", "{W}/adir", "--max-kv", "1GiB"], "--front"),
        (["plan", "--front", "{W}/nope.json", "--max-kv", "1GiB"], "--front"),
        (["plan", "--front", "/dev/zero", "--max-kv", "1GiB"], "--front"),
        (["plan", "--front", "", "--max-kv", "1GiB"], "--front"),
    ]


def _budgets_and_commands() -> list[tuple[list[str], str]]:
    """Work done, then a traceback: budgets and the other commands' numbers."""
    return [
        ([*P, "--batch", "0"], "--batch"),
        ([*P, "--batch", "-3"], "--batch"),
        ([*P, "--batch", "9" * 5000], "--batch"),
        ([*P, "--depth", "0"], "--depth"),
        ([*P, "--width", "-64"], "--width"),
        ([*P, "--subnets", "0"], "--subnets"),
        ([*P, "--threads", "0"], "--threads"),
        ([*P, "--profile", "{W}/adir", "--max-latency", "2s"], "--profile"),
        *[(["plan", "--depth", "30", "--max-latency", "2s", "--profile", f"{{W}}/{name}.json"],
           f"{name}.json") for name in ("profile_noscales", "profile_strdecoder",
                                        "profile_negrows", "profile_fewscales", "profile_nomodel",
                                        "profile_list")],
        ([*P, "--max-kv", "0"], "--max-kv"),
        ([*P, "--max-kv", "-1GiB"], "--max-kv"),
        ([*P, "--max-kv", "1e999"], "--max-kv"),
        ([*P, "--max-memory", "abc"], "--max-memory"),
        ([*P, "--max-latency", "0"], "--max-latency"),
        ([*P, "--max-latency", "nan"], "--max-latency"),
        (["eval", "--model", "random:tiny", "--out", "{X}/e", "--wait-timeout", "nan"],
         "--wait-timeout"),
        (["eval", "--model", "random:tiny", "--out", "{X}/e", "--num-per-class", "0"],
         "--num-per-class"),
        (["eval", "--model", "builtin", "--out", "{X}/e", "--num-per-class", "90000",
          "--batch-size", "90000", "--metric", "none"], "--batch-size"),
        (["bench", "--model", "builtin", "--batch", "100000000"], "--batch"),
        (["train-metric", "--out", "{X}/m", "--lr", "nan"], "--lr"),
        (["train-metric", "--out", "{X}/m", "--noise-std", "inf"], "--noise-std"),
        (["train-metric", "--out", "{X}/m", "--epochs", "0"], "--epochs"),
        (["train", "--out-dir", "{X}/r", "--lr", "nan"], "--lr"),
        (["train", "--out-dir", "{X}/r", "--betas", "0.9,nan"], "--betas"),
        (["train", "--out-dir", "{X}/r", "--subnet-depths", "2,x"], "--subnet-depths"),
        (["train", "--out-dir", "{X}/r", "--max-steps", "1" * 4400], "--max-steps"),
        (["tokenize", "--data", "procedural", "--out", "{X}/t", "--shard-size", "0"],
         "--shard-size"),
        (["tokenize", "--data", "procedural", "--out", "{X}/t", "--workers", "-1"], "--workers"),
        (["tokenize", "--data", "procedural", "--out", "{X}/t", "--device", "gpu"], "--device"),
        (["demo", "--jobs", "0", "--out", "{X}/d"], "--jobs"),
        ([*T, "--seeds", "-1"], "--seeds"),
        (["tune", "--model", "random:tiny", "--out", "{W}/tune_corrupt"], "tune.json"),
        (["tune", "--model", "random:tiny", "--out", "{W}/tune_badfront"], "front.json"),
        (["tune", "--model", "random:tiny", "--out", "{W}/tune_nanfront"], "front.json"),
        ([*T, "--num-per-class", "0"], "--num-per-class"),
        ([*T, "--bench-batch", "0"], "--bench-batch"),
        ([*T, "--repeats", "0"], "--repeats"),
        ([*T, "--warmup", "-1"], "--warmup"),
        ([*T, "--num-classes", "999", "--reference-count", "4"], "--num-classes"),
    ]


def _coercion() -> list[tuple[list[str], str]]:
    """Silent coercion."""
    return [
        ([*P, "--plans", "[[0,7.9]]"], "7.9"),
        ([*P, "--plans", '[["07"]]'], '"07"'),
        ([*P, "--plans", "[[true,7]]"], "true"),
        ([*P, "--plans", "[[NaN]]"], "NaN"),
        ([*P, "--plans", "[[1e400]]"], "[[1e400]]"),
        ([*P, "--plans", "[1,2]"], "[1,2]"),
        ([*P, "--plans", "[[0,1],"], "[[0,1],"),
        ([*S, "--plan", "[[0, 1.0]]"], "1.0"),
    ]


def _wrong_names() -> list[tuple[list[str], str]]:
    """Messages that name the wrong thing."""
    return [
        ([*P, "--max-latency", "abc"], "--max-latency"),
        ([*P, "--max-kv", "16 gigs"], "--max-kv"),
        ([*S, "--nrow", "-3"], "--nrow"),
        ([*S, "--seed", "1e23"], "--seed"),
        ([*S, "--seed", "100000000000000000000000"], "--seed"),
        ([*S, "--num", "1" * 5000], "--num"),
        ([*S, "--cfg", "1" * 400], "--cfg"),
        ([*P, "--plans", "full+guide=d99"], "guide plan 'd99'"),
        ([*P, "--plans", "full+autoguide=[[0]]"], "guide plan"),
        ([*P, "--plans", "d" + "9" * 5000], "cannot read plan"),
        ([*P, "--plans", "full+cfgstop" + "9" * 5000], "cannot read configuration"),
        ([*P, "--plans", "full+prune0.5@" + "9" * 5000], "cannot read configuration"),
        ([*P, "--plans", "d0"], "subnet_depth"),
        ([*P, "--plans", "d4@r0"], "scale range"),
        ([*P, "--plans", "d4@r9-r2"], "scale range"),
        ([*P, "--plans", "full+warp9"], "unknown lever"),
        ([*P, "--plans", "full+kvfp16"], "unknown KV precision 'fp16'"),
        ([*P, "--plans", "full+kv8@" + "9" * 5000], "cannot read configuration"),
        ([*P, "--plans", "+cfgstop3"], "no plan"),
        ([*P, "--bridge", "99"], "bridge"),
    ]


def _plan_search() -> list[tuple[list[str], str]]:
    """`tune --search` (issue 22): the family, the FLOP budget and the search flags are refused
    before anything is written (random:tiny: 4 layers, 3 scales, cheapest plan ~70%)."""
    return [
        ([*T, "--search", "zig"], "--search"),
        ([*T, "--search", "zone:"], "--search"),
        ([*T, "--search", "zone:3-1"], "--search"),
        ([*T, "--search", "zone:2-7"], "scale range 'r2-r7'"),
        ([*T, "--search", "paper", "--max-flops", "0.01"], "cheapest plan"),
        ([*T, "--search", "paper", "--max-flops", "3"], "--max-flops"),
        ([*T, "--search", "paper", "--max-flops", "-1G"], "--max-flops"),
        ([*T, "--search", "paper", "--max-flops", "1e999"], "--max-flops"),
        ([*T, "--search", "paper", "--max-flops", "60%G"], "--max-flops"),
        ([*T, "--search", "paper", "--keep", "0"], "--keep"),
        ([*T, "--search", "paper", "--bins", "x"], "--bins"),
        ([*T, "--search-seed", "3"], "--search-seed"),
        ([*T, "--search", "monotone", "--subnets", "9"], "subnet depths below"),
        ([*T, "--search", "paper", "--out", "{W}/search_list"], "not a search record"),
        ([*T, "--search", "paper", "--out", "{W}/search_corrupt"], "search.json"),
        ([*T, "--search", "paper", "--out", "{W}/tune_badfront"], "front.json"),
    ]


def cases() -> list[tuple[list[str], str]]:
    """The whole corpus, by the issue's classes."""
    return [*_writes(), *_false_advice(), *_numbers_devices_models(), *_damaged_files(),
            *_budgets_and_commands(), *_coercion(), *_wrong_names(), *_plan_search()]


def expand(argv: list[str], work: Path, outside: Path) -> list[str]:
    return [a.replace("{W}", str(work)).replace("{X}", str(outside)) for a in argv]


def snapshot(*roots: Path, recursive: bool = True) -> dict[str, tuple[int, int]]:
    """path -> (mtime_ns, size) of every file under `roots` (or directly in them), and (0, 0)
    for each folder (a folder's time changes whenever anyone, e.g. another test run in /tmp,
    adds a file to it; what a command writes shows as a file)."""
    out = {}
    for root in roots:
        if not root.exists():
            continue
        walk = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
        for folder, dirs, files in walk:
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                out[path] = (0, 0) if stat.S_ISDIR(st.st_mode) else (st.st_mtime_ns, st.st_size)
    return out
