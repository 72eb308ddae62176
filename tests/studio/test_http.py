"""The page's HTTP API without a browser: status codes, messages for bad input, concurrency.

Gradio's API: POST /gradio_api/call/compare {"data": [...]} answers an event id; GET
/gradio_api/call/compare/<id> streams server-sent events ending in `complete` (the outputs) or
`error` (the message).
"""

import json
import threading
import urllib.error
import urllib.request

import pytest

GOOD = [[0, 2], 2, 0, 1.5, 900, 0.96, "fp32", 1, "full", "d2", "", ""]
OUTPUTS = {"table": 12, "chart": 13, "files": 14, "commands": 15}  # after 4 columns, grids, stats


pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # its pandas calls


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def call(base: str, data: list) -> tuple[str, object]:
    """(last event, its data) of one request to the `compare` endpoint."""
    body = json.dumps({"data": data}).encode()
    post = urllib.request.Request(f"{base}gradio_api/call/compare", body,
                                  {"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=60) as r:
        assert r.status == 200
        event_id = json.loads(r.read())["event_id"]
    status, stream = get(f"{base}gradio_api/call/compare/{event_id}")
    assert status == 200
    event = payload = None
    for line in stream.decode().splitlines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            payload = json.loads(line[len("data: "):])
    return event, payload


def test_page_and_api_description(server):
    status, page = get(server.url)
    assert status == 200 and b"<html" in page
    status, config = get(f"{server.url}config")
    assert status == 200 and json.loads(config)["title"] == "VARiant Studio"
    status, info = get(f"{server.url}gradio_api/info")
    assert status == 200
    params = json.loads(info)["named_endpoints"]["/compare"]["parameters"]
    assert [p["parameter_name"] for p in params][:2] == ["classes", "num_images"]
    assert params[-1]["parameter_name"] == "configuration_4"
    assert get(f"{server.url}no-such-page")[0] == 404


def test_a_request_is_answered_with_grids_costs_and_commands(server):
    event, outputs = call(server.url, GOOD)
    assert event == "complete"
    assert [o["visible"] for o in outputs[:4]] == [True, True, False, False]
    assert [o["label"] for o in outputs[4:6]] == ["full", "d2"]
    assert outputs[OUTPUTS["table"]].count("<tr>") == 3  # the header and two configurations
    assert "<svg" in outputs[OUTPUTS["chart"]]
    names = [f["orig_name"] for f in outputs[OUTPUTS["files"]]]
    assert names == ["1-full.png", "2-d2.png", "reproduce.sh", "costs.json"]
    assert "--plan d2 --labels 0 2 " in outputs[OUTPUTS["commands"]]
    status, png = get(outputs[4]["value"]["url"])  # the grid itself is served
    assert status == 200 and png.startswith(b"\x89PNG")


# Ours, and Gradio's own checks of its fields (limits of the slider, choices of the picker)
@pytest.mark.parametrize("change, words", [
    ({9: "d9"}, "configuration 'd9': subnet_depth must be in 1..8"),
    ({9: "fastest"}, "cannot read configuration 'fastest': give a plan (full, d4"),
    ({9: "memory under 1 KB"}, "nothing fits the budget: even the cheapest, d2@bridge0, "
                               "needs memory"),
    ({5: 1.5}, "Value 1.5 is greater than maximum value 1"),
    ({1: 99}, "Value 99 is greater than maximum value 8"),
    ({0: ["unicorn"]}, "'unicorn' (type: <class 'str'>) is not in the list of choices"),
    ({2: "abc"}, "Could not preprocess input component at index 2"),
    ({8: "", 9: ""}, "choose at least one configuration"),
    ({9: "best under 1 ms"}, "budget 'best under 1 ms': nothing fits"),
])
def test_bad_input_is_answered_with_a_message(server, change, words):
    data = [change.get(i, v) for i, v in enumerate(GOOD)]
    event, payload = call(server.url, data)
    assert event == "error" and words in payload["error"]
    assert get(server.url)[0] == 200  # and the server keeps serving


def test_two_concurrent_requests_are_both_answered(server):
    answers = {}

    def ask(name, data):
        answers[name] = call(server.url, data)

    threads = [threading.Thread(target=ask, args=("a", GOOD)),
               threading.Thread(target=ask, args=("b", GOOD[:8] + ["d4", "", "", ""]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answers["a"][0] == answers["b"][0] == "complete"
    assert [o["label"] for o in answers["b"][1][4:5]] == ["d4"]
