"""The Gradio page of VARiant Studio: a thin layer over `Studio` (the only module that imports
Gradio, an optional dependency: `pip install -e ".[studio]"`).

One event, `compare` (HTTP: POST /gradio_api/call/compare), runs on a queue of one: requests on
one device run one at a time. A bad request is answered with its message (an error event; a
dialog on the page) and the server keeps serving.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..units import DTYPES
from .classes import class_choices
from .compare import Studio
from .entries import ENTRY_HELP
from .report import commands_text, cost_chart_svg, cost_table_html, stats_html, write_downloads
from .request import MAX_CONFIGURATIONS, MAX_REPEATS, describe_error, request_from_form

log = logging.getLogger(__name__)

QUEUE_SIZE = 16  # waiting requests; more are refused with a message
KEEP_REQUESTS = 8  # download folders kept on disk
GRID_HEIGHT = 280  # pixels on the page; the download keeps the model's resolution

CSS = """
.studio-grid img { image-rendering: pixelated; object-fit: contain; }
.studio-stats { font-size: 13px; line-height: 1.5; font-variant-numeric: tabular-nums; }
#costs { overflow-x: auto; }
.studio-costs { font-size: 13px; border-collapse: collapse; width: 100%; }
.studio-costs th { text-align: left; font-weight: 600; }
.studio-costs th, .studio-costs td { padding: 3px 6px; border-bottom: 1px solid #ddd; }
.studio-costs td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.studio-costs td:first-child, .studio-costs td:nth-child(2) { text-align: left; }
.studio-note { font-size: 12px; color: #555; }
"""
# System fonts: the page loads nothing from the internet.
THEME = gr.themes.Default(font=[gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")],
                          font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")])


def build_app(studio: Studio, workdir: Path) -> gr.Blocks:
    """The page of `studio`; downloads are written under `workdir`."""
    # delete_cache: every 10 minutes, drop Gradio's copies of outputs older than an hour
    with gr.Blocks(title="VARiant Studio", analytics_enabled=False,
                   delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## VARiant Studio\n{studio.describe()}. The same seed and classes under "
                    "each configuration, with what each costs.")
        inputs = _settings(studio) + _configurations(studio)
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        outputs = _results()
        button.click(_handler(studio, workdir), inputs, outputs, api_name="compare",
                     concurrency_limit=1)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def _settings(studio: Studio) -> list:
    """Classes, number of images, seed, cfg, top-k, top-p, dtype, timed runs."""
    default = studio.default_request()
    with gr.Row():
        classes = gr.Dropdown(
            class_choices(studio.class_names), value=list(range(min(2, len(studio.class_names)))),
            multiselect=True, label="Classes", elem_id="classes", scale=3,
            info="type to search; the images cycle through them (none: random classes from "
                 "the seed)")
        num_images = gr.Slider(1, studio.max_images, value=default.num_images, step=1,
                               label="Images per configuration", elem_id="num-images")
        seed = gr.Number(default.sampling.seed, precision=0, label="Seed", elem_id="seed")
    with gr.Row():
        cfg = gr.Number(default.sampling.cfg, minimum=0, step=0.1, label="cfg (0: off)",
                        elem_id="cfg")
        top_k = gr.Number(default.sampling.top_k, precision=0, minimum=0, label="top-k (0: off)",
                          elem_id="top-k")
        top_p = gr.Slider(0, 1, value=default.sampling.top_p, step=0.01, label="top-p (0: off)",
                          elem_id="top-p")
        dtype = gr.Radio(sorted(DTYPES), value=default.sampling.dtype, label="dtype",
                         elem_id="dtype")
        repeats = gr.Slider(1, MAX_REPEATS, value=default.repeats, step=1,
                            label="Timed runs (median)", elem_id="repeats")
    return [classes, num_images, seed, cfg, top_k, top_p, dtype, repeats]


def _configurations(studio: Studio) -> list:
    """Four pickers offering this model's plans and budgets; any entry may be typed."""
    suggestions = studio.suggestions()
    subnets = [s for s in suggestions if s.startswith("d")]
    first = ["full", subnets[-1] if subnets else ""]  # the full network vs the shallowest
    how = ("a budget picks the best configuration measured on the front (`variant tune`) within "
           "it, at the front's sampling settings" if studio.front is not None else
           "the budget planner picks the deepest plan that fits")
    gr.Markdown(f"**Configurations** (up to {MAX_CONFIGURATIONS}): {ENTRY_HELP}; {how}.")
    with gr.Row():
        return [gr.Dropdown([""] + suggestions, value=first[i] if i < len(first) else "",
                            allow_custom_value=True, filterable=True, show_label=False,
                            label=f"Configuration {i + 1}", elem_id=f"config-{i + 1}")
                for i in range(MAX_CONFIGURATIONS)]


def _results() -> list:
    """Per configuration a column (grid + its costs); the table, chart, downloads, commands."""
    columns, grids, stats = [], [], []
    with gr.Row(equal_height=False):
        for i in range(MAX_CONFIGURATIONS):
            with gr.Column(visible=False, min_width=200) as column:
                grids.append(gr.Image(type="numpy", format="png", interactive=False,
                                      height=GRID_HEIGHT, elem_id=f"grid-{i + 1}",
                                      elem_classes="studio-grid", buttons=["download"]))
                stats.append(gr.HTML(elem_id=f"stats-{i + 1}", apply_default_css=False))
            columns.append(column)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            table = gr.HTML(elem_id="costs", apply_default_css=False)
        with gr.Column(scale=1, min_width=300):
            chart = gr.HTML(elem_id="chart", apply_default_css=False)
    with gr.Row():
        files = gr.File(label="Downloads: grid PNGs, reproduce.sh, costs.json",
                        file_count="multiple", interactive=False, elem_id="downloads")
        commands = gr.Code(language="shell", label="variant sample: the same grids",
                           interactive=False, elem_id="commands", wrap_lines=True)
    return [*columns, *grids, *stats, table, chart, files, commands]


def _handler(studio: Studio, workdir: Path):
    """The `compare` event: the page's fields in, the page's updates out (`_results` order).
    Its parameter names are the HTTP API's (one configuration_N per picker)."""
    counter = itertools.count(1)

    def compare(classes, num_images, seed, cfg, top_k, top_p, dtype, timed_runs,
                configuration_1, configuration_2, configuration_3, configuration_4,
                progress=gr.Progress()):  # noqa: B008 - how Gradio passes a progress bar
        try:
            request = request_from_form(classes, num_images, seed, cfg, top_k, top_p, dtype,
                                        timed_runs, configuration_1, configuration_2,
                                        configuration_3, configuration_4)
            comparison = studio.compare(
                request, progress=lambda f, message: progress(f, desc=message))
            paths = write_downloads(studio.info, comparison,
                                    workdir / f"request-{next(counter):05d}")
        except Exception as err:  # every failure becomes a message; the server goes on
            if not isinstance(err, ValueError):
                log.exception("request failed")
            raise gr.Error(describe_error(err), duration=None, print_exception=False) from err
        _prune(workdir)
        return _updates(studio, comparison, paths)

    return compare


def _updates(studio: Studio, comparison, paths: list[Path]) -> tuple:
    n, outs = len(comparison.labels), comparison.outcomes
    blank = MAX_CONFIGURATIONS - len(outs)
    shown = [gr.Column(visible=i < len(outs)) for i in range(MAX_CONFIGURATIONS)]
    images = [gr.Image(value=o.grid_HW3, label=o.name if o.entry.text == o.name
                       else f"{o.entry.text} → {o.name}") for o in outs]
    return (*shown, *images, *[gr.Image(value=None)] * blank,
            *[stats_html(o, n) for o in outs], *[""] * blank,
            cost_table_html(comparison), cost_chart_svg(comparison), [str(p) for p in paths],
            commands_text(studio.info, comparison))


def _prune(workdir: Path) -> None:
    """Keep the download folders of the last KEEP_REQUESTS requests."""
    for old in sorted(workdir.glob("request-*"))[:-KEEP_REQUESTS]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Server:
    """A running studio page: `url` to open, `close()` to stop it and remove its downloads."""

    demo: gr.Blocks
    url: str
    workdir: Path

    def close(self) -> None:
        self.demo.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 7860) -> Server:
    """Start the page in a background thread (no browser is opened)."""
    workdir = Path(tempfile.mkdtemp(prefix="variant-studio-"))
    demo = build_app(studio, workdir)
    try:
        _, url, _ = demo.launch(
            server_name=host, server_port=port, inbrowser=False, share=False,
            prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False,
            mcp_server=False, pwa=False, allowed_paths=[str(workdir)], footer_links=["api"],
            theme=THEME, css=CSS)
    except OSError as err:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ValueError(f"cannot serve on {host}:{port} ({err}); choose another --port.") from None
    return Server(demo, url, workdir)
