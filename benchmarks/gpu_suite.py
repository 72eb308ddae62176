"""The GPU suite: one command that measures sampling and training on one GPU, side by side with
the official VAR, runs the `gpu` tests, and writes results.json and results.md to --out.

    PYTHONPATH=src python benchmarks/gpu_suite.py --out gpu-results --official .official/VAR
    PYTHONPATH=src python benchmarks/gpu_suite.py --tiny --out /tmp/suite    # CPU, tiny shapes

Random-weight VAR-d16 and VAR-d30 with the official VQVAE shape (ch 160, V 4096, Cvae 32,
256 px). Sampling (CFG 1.5, top-k 900, top-p 0.96, seed 0): the official sampler (under its fp16
and under bf16 autocast) vs ours for the plans full, d16, d8, d4, d2 at batch 1, 16 and 64, bf16
(and fp16 for the full plan), eager, and compiled for full and d8 at batch 64. Each row: median
time per image over --repeats synchronised calls after one warm-up call (whose time is kept:
for compiled rows it includes compilation), images/s, the peak `max_memory_allocated` growth
during a call, and the KV bytes (ours measured by the cache; the official sampler's from the
cost model: it keeps every layer's keys/values of all L tokens, keys in fp32 under 16-bit
autocast). Quantised weights (torchao weight-only, variant/precision.py): full and d8 at batch 16,
bf16, eager, with int8 and, where the GPU has it (compute capability >= 8.9), fp8 weights (plan
`full+w8`, `full+wfp8`, ...; skipped when torchao is absent). Training (VAR-d16, batch 16,
bf16 autocast): our step for the full network and each
subnet vs the official `VARTrainer.train_step`: step time and peak memory growth.

--tiny runs every code path on CPU with tiny shapes (depths 4 and 6, 64 px, batches 1 and 2;
compiled rows through dynamo's "eager" backend unless --compile-backend says otherwise) in well
under two minutes. --budget-s: no item starts that would not finish before it (judged from the
longest item of its kind so far); results are written after every item, so what was measured is
kept. Works with torch >= 2.6 (tested with 2.13 here; the GPU machine's is 2.11).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_var  # noqa: E402  (benchmarks/official_var.py: the child process)
import suite_report  # noqa: E402  (benchmarks/suite_report.py: results.md)

FULL = {"models": [("VAR-d16", 16), ("VAR-d30", 30)], "vae": {"V": 4096, "Cvae": 32, "ch": 160},
        "patch_nums": (1, 2, 3, 4, 5, 6, 8, 10, 13, 16), "num_classes": 1000,
        "plans": ("full", "d16", "d8", "d4", "d2"), "batches": (1, 16, 64),
        "compiled": (("full", 64), ("d8", 64)), "quantised": (("full", 16), ("d8", 16)),
        "train_model": "VAR-d16", "train_batch": 16,
        "device": "cuda", "train_dtype": "bf16"}
TINY = {"models": [("tiny-d4", 4), ("tiny-d6", 6)], "vae": {"V": 64, "Cvae": 8, "ch": 32},
        "patch_nums": (1, 2, 3, 4), "num_classes": 10, "plans": ("full", "d4", "d2"),
        "batches": (1, 2), "compiled": (("full", 2),), "quantised": (("full", 2), ("d2", 2)),
        "train_model": "tiny-d4",
        "train_batch": 2, "device": "cpu", "train_dtype": "fp32"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="directory for results.json and results.md")
    p.add_argument("--official", default=None, help="a plain checkout of FoundationVision/VAR")
    p.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (CI)")
    p.add_argument("--budget-s", type=float, default=480.0, help="stop before this many seconds")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per row (default 3; 2 with --tiny)")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads on CPU (default 2; 1 with --tiny, robust on a shared CPU)")
    p.add_argument("--compile-backend", default=None,
                   help="torch.compile backend of the compiled rows (default: inductor; "
                        "with --tiny: eager, dynamo without code generation)")
    p.add_argument("--no-tests", action="store_true", help="skip the gpu tests")
    p.add_argument("--deps", default=None,
                   help="a folder of packages this machine lacks (pip install --target), "
                        "searched after the machine's own")
    p.add_argument("--_official-worker", dest="official_worker", default=None,
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.official_worker is None and not args.out:
        p.error("--out DIR is required")
    if args.repeats is None:
        args.repeats = 2 if args.tiny else 3
    if args.threads is None:
        args.threads = 1 if args.tiny else 2
    if args.official and not (Path(args.official) / "models" / "var.py").is_file():
        p.error(f"--official {args.official} is not a checkout of FoundationVision/VAR "
                "(no models/var.py there); clone it and give its root")
    return args


class Budget:
    """Seconds left before --budget-s; an item starts only if the longest of its kind so far
    would still finish, with a reserve for writing the results."""

    def __init__(self, limit_s: float, reserve_s: float):
        self.start, self.limit, self.reserve = time.perf_counter(), limit_s, reserve_s
        self.longest: dict[str, float] = {}

    def left(self) -> float:
        return self.limit - (time.perf_counter() - self.start)

    def allows(self, kind: str) -> bool:
        return self.left() - self.reserve >= self.longest.get(kind, 0.0)

    def took(self, kind: str, seconds: float) -> None:
        self.longest[kind] = max(self.longest.get(kind, 0.0), seconds)


class Suite:
    def __init__(self, args: argparse.Namespace):
        self.args, self.shapes = args, TINY if args.tiny else FULL
        self.device = args.device or self.shapes["device"]
        self.out = Path(args.out)
        self.budget = Budget(args.budget_s, 5.0 if args.tiny else 20.0)
        self.results = {"meta": self._meta(), "sampling": [], "training": [], "tests": None,
                        "skipped": [], "errors": []}
        backend = args.compile_backend or ("eager" if args.tiny else "inductor")
        from variant.compiling import CompiledStep
        from variant.models.var import VAR

        self.compile_backend, self.step = backend, CompiledStep(VAR, backend=backend)

    def _meta(self) -> dict:
        a = self.args
        cuda = torch.cuda.is_available() and (a.device or self.shapes["device"]) == "cuda"
        return {"tiny": a.tiny, "device": a.device or self.shapes["device"],
                "device_name": (torch.cuda.get_device_name() if cuda
                                else f"{platform.machine()}, {os.cpu_count()} CPUs"),
                "torch": torch.__version__, "python": platform.python_version(),
                "official": bool(a.official), "budget_s": a.budget_s, "repeats": a.repeats,
                "threads": a.threads, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "elapsed_s": 0.0, "complete": False}

    # ------------------------------------------------------------------ bookkeeping
    def run_item(self, kind: str, label: str, fn) -> None:
        if not self.budget.allows(kind):
            self.results["skipped"].append(label)
            return
        start = time.perf_counter()
        fn()
        self.budget.took(kind, time.perf_counter() - start)
        self.save()

    def save(self) -> None:
        from variant.atomic import write_text_atomic

        self.results["meta"]["elapsed_s"] = round(time.perf_counter() - self.budget.start, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / "results.json", json.dumps(self.results, indent=2) + "\n")
        write_text_atomic(self.out / "results.md", suite_report.markdown(self.results))

    # ------------------------------------------------------------------ models
    def build(self, depth: int):
        import variant

        s = self.shapes
        torch.manual_seed(depth)
        vae = variant.build_vae(**s["vae"], patch_nums=s["patch_nums"])
        var = variant.build_var(vae, depth=depth, num_classes=s["num_classes"],
                                patch_nums=s["patch_nums"], drop_path_rate=0.0)
        return var.to(self.device).eval(), vae.to(self.device)

    def shape(self, depth: int) -> dict:
        s = self.shapes
        return {**s["vae"], "patch_nums": list(s["patch_nums"]), "num_classes": s["num_classes"],
                "depth": depth, "width": 64 * depth, "heads": depth}

    # ------------------------------------------------------------------ sampling
    def sample_ours(self, name, var, plan: str, batch: int, dtype: str, compiled: bool) -> None:
        from variant import SamplingConfig
        from variant.compiling import CompiledSteps
        from variant.sampling.sampler import generate

        model = CompiledSteps(var, self.step) if compiled else var
        settings = SamplingConfig(seed=0, dtype=dtype)
        labels = [i % var.num_classes for i in range(batch)]
        outs = []

        def call():
            outs.append(generate(model, batch, labels, settings=settings, plan=plan))

        first, _ = official_var._peak(self.device, call)
        if compiled:  # the second call still settles dynamo's caches: not steady yet
            call()
        runs = [official_var._peak(self.device, call) for _ in range(self.args.repeats)]
        seconds = statistics.median(r[0] for r in runs)
        self.results["sampling"].append({
            "model": name, "impl": "ours", "plan": plan, "batch": batch, "dtype": dtype,
            "mode": "compiled" if compiled else "eager", "first_call_s": round(first, 3),
            "ms_per_image": 1e3 * seconds / batch, "images_per_s": batch / seconds,
            "transformer_ms_per_image": 1e3 * statistics.median(
                o.timings["transformer"] for o in outs[-len(runs):]) / batch,
            "peak_growth_bytes": runs[-1][1], "kv_bytes": outs[-1].kv_peak_bytes,
            "compile_fell_back": compiled and self.step.eager})

    def sample_official(self, name: str, depth: int, var, state_path: str, budget_kind: str):
        from variant.models.cost import CostModel

        items = [{"kind": "sample", "batch": b, "dtype": d}
                 for b in self.shapes["batches"] for d in ("fp16", "bf16")]
        for out in self.official(depth, state_path, items, budget_kind):
            b, d = out["batch"], out["dtype"]
            self.results["sampling"].append({
                "model": name, "impl": "official", "plan": "full", "batch": b, "dtype": d,
                "mode": "eager", "first_call_s": None, "ms_per_image": 1e3 * out["seconds"] / b,
                "images_per_s": b / out["seconds"], "transformer_ms_per_image": None,
                "peak_growth_bytes": out["peak_growth"],
                "kv_bytes": CostModel(var.config, d, 2 * b).official_kv_bytes(),
                "compile_fell_back": False})
            self.save()

    def official(self, depth: int, state_path: str, items: list[dict], kind: str):
        """Run `items` in the official child process, yielding results as they come; the child
        is stopped when the budget runs out."""
        job = {"official": self.args.official, "device": self.device, "threads":
               self.args.threads, "state": state_path, "shape": self.shape(depth),
               "items": items, "warmup": 1, "repeats": self.args.repeats}
        job_path = Path(state_path).with_suffix(".json")
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, os.path.abspath(__file__), "--_official-worker", str(job_path)]
        if self.args.deps:
            cmd += ["--deps", self.args.deps]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        try:
            while True:
                start = time.perf_counter()
                try:
                    line = lines.get(timeout=max(1.0, self.budget.left() - self.budget.reserve))
                except queue.Empty:
                    self.results["skipped"].append(f"official {kind}: budget ran out")
                    return
                if line is None:
                    if proc.wait() != 0:
                        self.results["errors"].append(
                            f"official {kind}: the worker failed (exit {proc.returncode}); its "
                            "error is above in the suite's stderr")
                    return
                if line.startswith(official_var.MARK):
                    out = json.loads(line[len(official_var.MARK):])
                    if "ready" not in out:
                        self.budget.took(kind, time.perf_counter() - start)
                        yield out
                else:
                    print(f"[official] {line}", end="", file=sys.stderr)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def sampling(self, name: str, depth: int, tmp: str) -> None:
        var, vae = self.build(depth)
        state_path = os.path.join(tmp, f"{name}.pt")
        torch.save({"var": var.state_dict(), "vae": vae.state_dict()}, state_path)
        if self.args.official:
            self.sample_official(name, depth, var, state_path, f"official-sample-{name}")
        plans = [p for p in self.shapes["plans"] if p == "full" or int(p[1:]) < depth]
        for plan in plans:
            for batch in self.shapes["batches"]:
                for dtype in ("bf16", "fp16") if plan == "full" else ("bf16",):
                    self.run_item(f"sample-{name}", f"{name} {plan} b{batch} {dtype} eager",
                                  lambda p=plan, b=batch, d=dtype:
                                  self.sample_ours(name, var, p, b, d, False))
        for plan, batch in self.shapes["compiled"]:
            if plan in plans:
                self.run_item(f"compile-{name}", f"{name} {plan} b{batch} bf16 compiled",
                              lambda p=plan, b=batch: self.sample_ours(name, var, p, b, "bf16",
                                                                       True))
        self.quantised(name, var, plans)

    def quantised(self, name: str, var, plans) -> None:
        """The quantised-weight rows: each precision torchao runs on this device."""
        from variant.precision import (
            MissingTorchao,
            WeightCopies,
            supported_precisions,
            torchao_quantization,
        )
        from variant.sampling.weight_lever import SPEC_PARTS

        try:
            torchao_quantization()
        except MissingTorchao:
            self.results["skipped"].append(f"{name} quantised weights: torchao is not installed "
                                           "(pip install 'variant[quant]')")
            return
        copies = WeightCopies(var)
        for precision in supported_precisions(self.device):
            for plan, batch in self.shapes["quantised"]:
                if plan in plans:
                    spec = f"{plan}+{SPEC_PARTS[precision]}"
                    self.run_item(f"quant-{name}", f"{name} {spec} b{batch} bf16 eager",
                                  lambda s=spec, b=batch, p=precision:
                                  self.sample_ours(name, copies(p), s, b, "bf16", False))

    # ------------------------------------------------------------------ training
    def training(self, tmp: str) -> None:
        s = self.shapes
        name = s["train_model"]
        depth = dict(s["models"])[name]
        if self.args.official:
            var, vae = self.build(depth)
            path = os.path.join(tmp, f"{name}-train.pt")
            torch.save({"var": var.state_dict(), "vae": vae.state_dict()}, path)
            item = {"kind": "train", "batch": s["train_batch"]}
            for out in self.official(depth, path, [item], "official-train"):
                self.results["training"].append(self._train_row(name, "official", "full", out))
                self.save()
        for plan in ["full"] + [p for p in s["plans"] if p != "full" and int(p[1:]) < depth]:
            self.run_item("train", f"train {name} {plan}",
                          lambda p=plan: self.train_ours(name, depth, p, tmp))

    def _train_row(self, name: str, impl: str, plan: str, out: dict) -> dict:
        return {"model": name, "impl": impl, "plan": plan, "batch": self.shapes["train_batch"],
                "dtype": self.shapes["train_dtype"] if self.device == "cuda" else "fp32",
                "step_ms": 1e3 * out["seconds"], "peak_growth_bytes": out["peak_growth"]}

    def train_ours(self, name: str, depth: int, plan: str, tmp: str) -> None:
        from variant.data.procedural import ProceduralImages
        from variant.training import Trainer, train_preset

        s = self.shapes
        var, vae = self.build(depth)
        ratio, subnets = ("full-only", (2,)) if plan == "full" else ("fixed:1.0", (int(plan[1:]),))
        config = train_preset("tiny").replace(
            out_dir=os.path.join(tmp, f"train-{plan}"), global_batch=s["train_batch"],
            ratio=ratio, subnet_depths=subnets, bridge=-1, lr=1e-6, grad_clip=2.0,
            precision=s["train_dtype"] if self.device == "cuda" else "fp32", device=self.device,
            progress=False, tensorboard=False, num_images=4 * s["train_batch"])
        data = ProceduralImages(config.num_images, vae.config.image_size, 0, var.num_classes)
        trainer = Trainer(config, models=(var.train(), vae), dataset=data)
        batch = next(iter(trainer.loader))
        calls = iter(range(10**6))
        call = lambda: trainer.train_step(next(calls), [batch])  # noqa: E731
        call()  # warm-up
        runs = [official_var._peak(self.device, call) for _ in range(self.args.repeats)]
        out = {"seconds": statistics.median(r[0] for r in runs), "peak_growth": runs[-1][1]}
        self.results["training"].append(self._train_row(name, "ours", plan, out))

    # ------------------------------------------------------------------ tests
    def tests(self) -> None:
        tests = Path(__file__).resolve().parent.parent / "tests" / "gpu"
        if self.args.no_tests or not tests.is_dir():
            self.results["tests"] = {"ran": False, "why": "--no-tests" if self.args.no_tests
                                     else f"{tests} is absent"}
            return
        report = self.out / "gpu-tests.xml"
        pytest_args = ["-q", "-m", "gpu", str(tests), f"--junitxml={report}", "-p",
                       "no:cacheprovider"]
        if self.args.official:  # the memory check against the official sampler
            pytest_args += ["--official", str(Path(self.args.official).resolve())]
        # pytest in a child process, with the same search path (--deps after the machine's own)
        cmd = [sys.executable, "-c", "import sys; sys.path[:0] = sys.argv[1:3]; "
               "sys.path += [p for p in sys.argv[3:4] if p]; import pytest; "
               "sys.exit(pytest.main(sys.argv[4:]))",
               str(Path(__file__).resolve().parent.parent / "src"), str(tests),
               self.args.deps or "", *pytest_args]
        limit = max(10.0, min(300.0, self.budget.left() - self.budget.reserve))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            self.results["tests"] = {"ran": False, "why": f"timed out after {limit:.0f} s"}
            return
        self.results["tests"] = suite_report.junit_counts(report, proc.returncode,
                                                          proc.stdout[-2000:])

    def run(self) -> dict:
        torch.set_num_threads(self.args.threads)
        self.save()
        self.run_item("tests", "gpu tests", self.tests)
        with tempfile.TemporaryDirectory(prefix="variant-suite-") as tmp:
            for name, depth in self.shapes["models"]:
                self.sampling(name, depth, tmp)
            self.training(tmp)
        self.results["meta"]["complete"] = not (self.results["skipped"] or self.results["errors"])
        self.save()
        return self.results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.deps:
        sys.path.append(str(Path(args.deps).resolve()))
    if args.official_worker:
        official_var.worker(args.official_worker)
        return 0
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device here; run with --tiny (CPU, tiny shapes) or on a GPU "
              "machine", file=sys.stderr)
        return 2
    results = Suite(args).run()
    print(suite_report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
