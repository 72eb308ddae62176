"""Every `variant` command in README.md and every `e.g. --flag ...` example in `--help` works as
written (issue 18).

README commands are extracted from its bash blocks. Each one either runs here as written, with
only flags appended that make it small (fewer images, one training step, a dry run), or, when it
needs what this machine has not (an official checkpoint, ImageNet, GPUs, minutes), is parsed by
the real argument parser, whose types check every value; `NEEDS` says why for each. A README
command in neither table fails the test, so a new example gets checked too.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from helpers import main_in_process
from variant.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
FRONT = "docs/reproduction/front/front.json"  # the committed front of the built-in model


def readme_commands() -> list[str]:
    """The `variant ...` commands of README.md's bash blocks, continuations joined, comments
    dropped, `a && b` split (`torchrun ... -m variant ...` counts as a `variant` command)."""
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if "variant" in words and (words[0] == "variant" or "-m" in words):
                    out.append(shlex.join(words[words.index("variant"):]))
    return out


# command as written -> the flags appended to make it small enough for the test suite
RUN = {
    "variant sample --out samples.png": ["--num", "2"],
    "variant plan": [],
    "variant plan --depth 30 --batch 64 --layers": [],
    "variant sample --plan '[[0,1,2,3,4,5,6,7],[0,7],[0,3,7],[1,2],[0,7],[7]]'": ["--num", "2"],
    "variant sample --plan d4+cfgstop4+prune0.5@4 --json run.json": ["--num", "2"],
    "variant sample --plan d4 --guide-plan d2 --guide-class same": ["--num", "2"],
    "variant plan --depth 16 --plans full d8 d8+cfgstop8+prune0.5@8 full+kv1,2": [],
    "variant train --preset tiny --out-dir runs/tiny": ["--max-steps", "1"],
    "variant analyze asymmetry --model builtin": ["--num-per-class", "1", "--metric", "none"],
    "variant tune --model builtin --out runs/tune": ["--show-grid"],
    "variant sample --plan d4+w8 --out w8.png": ["--num", "2"],
    "variant sample --plan d8.8.8.4.4.2 --out p.png": ["--num", "2"],
    "variant sample --plan d4+kv8 --out kv8.png": ["--num", "2"],
    "variant plan --depth 30 --batch 64 --dtype bf16 --plans full full+kv8 d16+kv8": [],
    "variant tune --model builtin --out runs/search --search monotone --max-flops 0.6":
        ["--show-grid"],
    "variant quantize --model builtin --weights int8 --out runs/int8": [],
}
# command as written -> why it is parsed, not run (and the file it names that exists here)
NEEDS = {
    "variant plan --model var_d30.pth --batch 64 --max-kv 16GiB": "the official VAR-d30 .pth",
    "variant sample --model var_d30.pth --plan d8 --labels 207 360 --cfg 1.5 --dtype bf16 "
    "--out grid.png": "the official VAR-d30 .pth",
    "variant train --preset paper-d30 --init var_d30.pth --data-path /data/imagenet/train "
    "--out-dir runs/d30": "ImageNet, 8 GPUs",
    "variant train-tokenizer --preset builtin --out runs/tok": "minutes of training",
    "variant tokenize --tokenizer runs/tok/tokenizer --data /data/imagenet/train --out tokens/":
        "ImageNet and a trained tokenizer",
    "variant eval --model runs/d30/final --plans full d16 d8 d2 --num-per-class 50 --metric "
    "inception --reference VIRTUAL_imagenet256_labeled.npz --out runs/eval":
        "a trained VAR-d30 and the ImageNet reference batch",
    "variant bench --model var_d30.pth --plans full d16 d8 d4 d2 --batch 64 --dtype bf16 "
    "--json b.json": "the official VAR-d30 .pth",
    "variant plan --front runs/tune/front.json --max-latency 30ms":
        f"a front measured on this machine ({FRONT} was measured on another)",
    "variant analyze pareto runs/p01/eval.json runs/p10/eval.json runs/prog/eval.json --out "
    "runs/pareto": "three eval.json files of trained supernets",
    "variant demo --mode quick --out runs/demo": "7 minutes",
    "variant plan --model random:var-d30 --batch 16 --max-memory 8GiB":
        "3 minutes of predictions on 2 cores (its choice is tested in tests/models/"
        "test_weight_precision.py and tests/cli/test_kv_precision_cli.py)",
    "variant demo --mode plans --out runs/demo --jobs 2": "about 2 hours of training and sampling",
    "variant train --preset builtin-supernet --init runs/demo/base/final --plan-family monotone "
    "--out-dir runs/elastic": "a trained base VAR and minutes of training",
    "variant studio": "a server that runs until stopped",
    "variant serve --front docs/reproduction/front/front.json --slo 2s":
        "a server that runs until stopped",
}
# files a parsed command names that this machine lacks but has an equivalent of
STAND_INS = {"runs/tune/front.json": FRONT}


def test_every_readme_command_is_run_or_parsed():
    commands = readme_commands()
    assert len(commands) >= 15
    unknown = [c for c in commands if c not in RUN and c not in NEEDS]
    assert not unknown, f"add these README commands to RUN or NEEDS: {unknown}"
    stale = [c for c in {*RUN, *NEEDS} if c not in commands]
    assert not stale, f"no longer in README.md: {stale}"


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = [STAND_INS.get(a, a) for a in shlex.split(command)[1:]]
    build_parser().parse_args(argv)  # argparse exits (failing the test) on any refused value


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", list(RUN))
def test_readme_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if FRONT in command:
        (tmp_path / FRONT).parent.mkdir(parents=True)
        (tmp_path / FRONT).write_text((REPO / FRONT).read_text())
    code, err = main_in_process(shlex.split(command)[1:] + RUN[command])
    assert code == 0, err


def _help_examples() -> list[tuple[list[str], list[str]]]:
    """(subcommand words, `--flag value ...` fragment) for each `e.g. --...` of every --help."""
    sub = build_parser()._subparsers._group_actions[0].choices
    parsers = []
    for name, parser in sub.items():
        nested = parser._subparsers._group_actions[0].choices if parser._subparsers else {}
        parsers += [([name, n], p) for n, p in nested.items()] or [([name], parser)]
    out = set()
    for words, parser in parsers:
        texts = [parser.description, *(g.description for g in parser._action_groups),
                 *(a.help for a in parser._actions)]
        for text in filter(None, texts):
            text = " ".join(text.replace("%%", "%").split())
            for m in re.finditer(r"e\.g\. ((?:--[a-z][a-z-]*(?: (?!--)[^\s;()]+)*\s?)+)",
                                 text):
                fragment = tuple(w.rstrip(",.") for w in m.group(1).split())
                out.add((tuple(words), fragment))
    return sorted((list(w), list(f)) for w, f in out)


# what a command needs besides the example (its required flags)
REQUIRED = {"tune": ["--out", "x"], "eval": ["--out", "x"],
            "tokenize": ["--data", "procedural", "--out", "x"]}


def test_help_has_examples():
    assert len(_help_examples()) >= 20


@pytest.mark.parametrize("words, fragment", _help_examples(),
                         ids=lambda v: " ".join(v))
def test_help_example_parses(words, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_parser().parse_args([*words, *REQUIRED.get(words[0], []), *fragment])


@pytest.mark.parametrize("fragment", sorted({tuple(f) for w, f in _help_examples()
                                             if w == ["plan"]}))
def test_help_example_of_plan_runs(fragment):
    """`variant plan` accepts the lever flags and plans of every other command's examples; run
    them on VAR-d30's shape, which the examples' scale numbers are written for (K = 10), on the
    full plan as `variant sample` would (a lever flag applies to every plan of the table)."""
    plans = [] if {"--plan", "--plans"} & set(fragment) else ["--plans", "full"]
    code, err = main_in_process(["plan", "--depth", "30", *plans, *fragment])
    assert code == 0, err


def test_readme_first_steps_start_from_the_repository_url():
    """Someone with only the URL: clone, enter, a virtual environment, the CPU build of torch,
    then the editable install, in that order (the `variant` commands of the block run above)."""
    first = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    steps = ["git clone ", "cd variant", "python -m venv .venv", ". .venv/bin/activate",
             "pip install torch --index-url https://download.pytorch.org/whl/cpu",
             "pip install -e .", "variant sample", "variant plan"]
    positions = [first.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), first
    assert "/samples.png" in (REPO / ".gitignore").read_text().split()
