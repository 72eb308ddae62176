"""What the page shows, from made-up comparisons (no model, no web framework)."""

import json
import re
import shlex
import xml.etree.ElementTree as ET

import numpy as np

from variant.sampling.plan import DepthPlan
from variant.sampling.settings import SamplingConfig
from variant.studio import Comparison, ModelInfo, Outcome, Request
from variant.studio.entries import parse_entry
from variant.studio.report import (
    COLUMNS,
    commands_text,
    cost_chart_svg,
    cost_table_html,
    png_name,
    sample_command,
    stats_html,
    write_downloads,
)


def _outcome(text, total, kv, flops, how="plan"):
    entry = parse_entry(text, 4, 3)
    plan = entry.plan or DepthPlan.from_spec("d2", 4, 3)
    runs = [{"transformer": total * 0.8, "decoder": total * 0.2, "total": total}]
    return Outcome(entry, plan, how, np.zeros((10, 10, 3), np.uint8), kv, flops, runs)


def _comparison(*outcomes, full=True):
    if full:
        ref = outcomes[0]
        for o in outcomes:
            o.speedup = ref.median("total") / o.median("total")
            o.speedup_transformer = ref.median("transformer") / o.median("transformer")
            o.kv_saving = 1 - o.kv_peak_bytes / ref.kv_peak_bytes
    settings = SamplingConfig(seed=3)
    return Comparison(Request(configurations=tuple(o.entry.text for o in outcomes)), [1, 2],
                      settings, list(outcomes), outcomes[0].kv_peak_bytes, full, "cpu", 1.0)


def test_cost_table_has_one_row_per_configuration():
    c = _comparison(_outcome("full", 2.0, 4096, 8e9), _outcome("d2", 1.0, 1024, 4e9))
    table = ET.fromstring(f"<div>{cost_table_html(c)}</div>").find("table")
    assert [th.text for th in table.iter("th")] == list(COLUMNS)
    rows = [[td.text for td in tr.iter("td")] for tr in table.find("tbody")]
    assert rows[0] == ["full", "full", "1.600", "0.400", "1.00", "4.00 KiB", "4",
                       "1.00× (1.00×)", "0%"]
    assert rows[1] == ["d2", "d2", "0.800", "0.200", "2.00", "1.00 KiB", "2",
                       "2.00× (2.00×)", "75%"]


def test_without_the_full_network_speed_ups_are_left_out_and_said_why():
    c = _comparison(_outcome("d2", 1.0, 1024, 4e9), full=False)
    html = cost_table_html(c)
    assert "<td>—</td>" in html and "add 'full'" in html
    assert "faster" not in stats_html(c.outcomes[0], 2)


def test_page_text_is_escaped():
    o = _outcome("KV under 2 KiB", 1.0, 1024, 4e9, how="<b>KV ≤ 2 KiB → d2</b>")
    c = _comparison(o, full=False)
    lines = stats_html(o, 2)
    assert "<b>" not in lines and "&lt;b&gt;KV ≤ 2 KiB → d2&lt;/b&gt;" in lines
    ET.fromstring(f"<div>{cost_table_html(c)}</div>")  # well-formed


def test_chart_has_three_bars_per_configuration_relative_to_full():
    c = _comparison(_outcome("full", 2.0, 4096, 8e9), _outcome("d2", 1.0, 1024, 4e9))
    svg = ET.fromstring(cost_chart_svg(c))
    bars = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 6
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] == heights[1] == heights[2] > 0  # full: 1, 1, 1
    assert np.allclose(np.array(heights[3:]) / heights[0], [0.5, 0.5, 0.25])
    assert [t.text for t in bars[3].iter("{http://www.w3.org/2000/svg}title")] == ["time: 0.50"]


def test_command_lines_name_the_model_plan_labels_and_settings(tmp_path):
    json_plan = "[[0,1,2,3],[0,3],[3]]"
    c = _comparison(_outcome("full", 2.0, 4096, 8e9), _outcome(json_plan, 1.0, 1024, 4e9))
    model = tmp_path / "model"
    model.mkdir()
    info = ModelInfo(source=str(model), vae="vae.pth", revision=None)
    # a JSON plan's file is named by a hash of its spec (sampling.configuration.folder_name)
    assert re.fullmatch(r"2-custom-[0-9a-f]{10}\.png", png_name(1, c.outcomes[1]))
    line = sample_command(info, c, c.outcomes[1], png_name(1, c.outcomes[1]))
    args = shlex.split(line)
    assert args[:4] == ["variant", "sample", "--model", str(model.resolve())]
    assert args[args.index("--plan") + 1] == json_plan
    assert args[args.index("--labels") + 1:args.index("--labels") + 3] == ["1", "2"]
    for flag, value in (("--seed", "3"), ("--cfg", "1.5"), ("--top-k", "900"),
                        ("--top-p", "0.96"), ("--dtype", "fp32"), ("--batch-size", "2"),
                        ("--device", "cpu"), ("--out", png_name(1, c.outcomes[1])),
                        ("--vae", "vae.pth")):
        assert args[args.index(flag) + 1] == value
    hub = ModelInfo(source="someone/var-d16", revision="v1")
    assert "--revision v1" in sample_command(hub, c, c.outcomes[0], "x.png")
    assert png_name(0, c.outcomes[0]) == "1-full.png"


def test_downloads(tmp_path):
    c = _comparison(_outcome("full", 2.0, 4096, 8e9), _outcome("d2", 1.0, 1024, 4e9))
    paths = write_downloads(ModelInfo(), c, tmp_path)
    assert [p.name for p in paths] == ["1-full.png", "2-d2.png", "reproduce.sh", "costs.json"]
    costs = json.loads((tmp_path / "costs.json").read_text())
    assert [x["plan"]["name"] for x in costs["configurations"]] == ["full", "d2"]
    assert costs["configurations"][1]["speedup"] == 2.0
    script = (tmp_path / "reproduce.sh").read_text()
    assert script == commands_text(ModelInfo(), c)
    assert script.count("variant sample --model builtin --plan") == 2
