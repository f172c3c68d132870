"""Forged callback requests: every callback of every page, enumerated from the app's callback map, gets
wrong-typed values in each of its inputs and states through Flask's test client, and never answers 500 (a 4xx,
or an ignored update, is the expected answer). Plus the malformed bodies of the security review."""

import base64
import json
import os
import socket

import numpy as np
import pytest
from helpers import synthetic_sae

from jobs import client
from store import RunWriter
from store import jobs as jobstore

ROUTE = "/_dash-update-component"
# Wrong types and hostile strings, as a forged request would send them in place of any value.
FORGED = [
    None,
    0,
    -1,
    12345678901234567890,
    1.5,
    True,
    [],
    [1, "a", None],
    {},
    {"a": {"b": [1]}},
    "",
    "x" * 100_000,
    "<script>alert(1)</script>",
    "../../../etc/passwd",
    "NaN",
]
NO_JOB = "20000101-000000-abcdef"  # a well-formed job id that is not in the store
# What a real browser would send, so that a forged value in one slot meets plausible values in the others.
SEARCH = "?run=tiny&word=word3&feature=2&dim=1&group=g&proj=umap3d&color=group"
BASELINE_BY_PROP = {
    "n_clicks": 1,
    "n_submit": 1,
    "n_intervals": 1,
    "pathname": "/words",
    "search": SEARCH,
    "href": "/words" + SEARCH,
    "page_current": 0,
    "page_size": 25,
    "sort_by": [],
    "filter_query": "",
    "active_cell": {"row": 0, "column": 0, "column_id": "feature"},
    "clickData": {"points": [{"pointIndex": 1, "customdata": [1], "x": 1, "y": 2}]},
    "data": 0,
}
BASELINE_BY_ID = {
    "run-picker": "tiny",
    "words-search": "word3",
    "words-proj": "umap3d",
    "words-color": "group",
    "dims-input": "1",
    "concepts-group": "g",
    "concepts-words": "word1, word2",
    "jobs-model": "glove-6b-50d",
    "jobs-name": "",
    "jobs-layers": "all",
    "jobs-vocab-mode": "top",
    "jobs-top-n": 2000,
    "jobs-words": "",
    "jobs-groups-source": "default",
    "jobs-groups-text": "",
    "jobs-sae-arch": "topk",
    "jobs-d-sae": 256,
    "jobs-k": 8,
    "jobs-l1": 5.0,
    "jobs-steps": 1000,
    "jobs-umap": True,
}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """The real app over a small synthetic store. The anonymous user already has the one job the cap allows
    (running, in this process), so no forged submission queues a job or starts a worker (the form's callbacks
    still run end to end, through the policy)."""
    mp = pytest.MonkeyPatch()
    for var in ("LEXISCOPE_BROKER_URL", "LEXISCOPE_JOBS_POLICY", "LEXISCOPE_AUTH", "LEXISCOPE_MODELS"):
        mp.delenv(var, raising=False)
    mp.setenv("LEXISCOPE_MAX_JOBS_PER_USER", "1")
    mp.setenv("LEXISCOPE_WARM_UP", "false")
    mp.setenv("LEXISCOPE_HEARTBEAT_TIMEOUT", "3600")
    rng = np.random.default_rng(5)
    n = 200
    X = rng.standard_normal((n, 8)).astype(np.float32)
    group = np.full(n, -1, np.int16)
    group[:20] = 0
    data = {
        "words/text": [f"word{i}" for i in range(n)],
        "words/zipf": np.linspace(6, 2, n).astype(np.float32),
        "words/group": group,
        "groups/names": ["g"],
        "embeddings": X,
        "projections/umap3d": rng.standard_normal((n, 3)).astype(np.float32),
        "projections/pca2": rng.standard_normal((n, 2)).astype(np.float32),
        "geometry": {"i_cos": 0.1, "i_pc": 0.5},
        "geometry/mean": X.mean(0),
        "geometry/cos_contrib": np.abs(X.mean(0)) / 10,
        "geometry/outlier_dims": np.array([1], np.int64),
    }
    data.update(synthetic_sae(X, group, 1, d_sae=32, k=4))
    root = tmp_path_factory.mktemp("fuzz-store")
    with RunWriter(root, "tiny", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="t") as w:
        w.write_all(data)
    # The anonymous user's one job, "running" in this process (so nothing reaps it, and no worker is wanted).
    job = jobstore.create_job({"model": "glove-6b-50d"}, root, user="anonymous")
    jobstore.claim_job(job["id"], root, host=socket.gethostname(), pid=os.getpid(), worker="fuzz")

    from dashboard.app import app
    from dashboard.lib import store

    store.configure(root)
    http = app.server.test_client()
    assert http.get("/_dash-dependencies").status_code == 200  # Dash builds its callback map on first request
    yield app, http, root, job["id"]
    store.configure(None)
    pid = client.embedded_worker_pid(root)
    assert pid is None, "a forged request started a job worker"
    mp.undo()


def _outputs(key: str):
    """The request's `outputs` for a callback-map key ('id.prop' or '..id.prop...id.prop..')."""
    if key.startswith(".."):
        parts = key[2:-2].split("...")
        return [_one_output(p) for p in parts]
    return _one_output(key)


def _one_output(spec: str):
    cid, prop = spec.rsplit(".", 1)
    return {"id": json.loads(cid) if cid.startswith("{") else cid, "property": prop}


def _slot(dep: dict, value, pattern_id=None) -> dict:
    """One input or state as the renderer sends it; a pattern-matching ALL slot is a list of matches."""
    cid = dep["id"]
    if cid.startswith("{"):
        wild = json.loads(cid)
        concrete = pattern_id or {k: (NO_JOB if k == "job" else "0") if v == ["ALL"] else v for k, v in wild.items()}
        return [{"id": concrete, "property": dep["property"], "value": value}]
    return {"id": cid, "property": dep["property"], "value": value}


def _prop_id(slot) -> str:
    item = slot[0] if isinstance(slot, list) else slot
    cid = item["id"]
    if isinstance(cid, dict):
        cid = json.dumps(cid, sort_keys=True, separators=(",", ":"))
    return f"{cid}.{item['property']}"


def _baseline(dep: dict):
    cid = dep["id"]
    if cid in BASELINE_BY_ID and dep["property"] == "value":
        return BASELINE_BY_ID[cid]
    return BASELINE_BY_PROP.get(dep["property"])


def _requests(key: str, cb: dict):
    """Every forged request for one callback: each forged value in each input and state slot, plus forged
    pattern ids (numbers, lists) for its pattern-matching inputs, each as the input that changed."""
    deps = [("inputs", d) for d in cb["inputs"]] + [("state", d) for d in cb["state"]]
    base = {kind: [] for kind in ("inputs", "state")}
    for kind, d in deps:
        base[kind].append(_slot(d, _baseline(d)))
    n_inputs = len(cb["inputs"])
    for i, (kind, d) in enumerate(deps):
        j = i if kind == "inputs" else i - n_inputs
        forged_slots = [_slot(d, v) for v in FORGED]
        if d["id"].startswith("{"):
            wild = json.loads(d["id"])
            for bad in (7, [1, 2], None, {"x": 1}, "x" * 5000):
                forged_slots.append(_slot(d, 1, {k: bad if v == ["ALL"] else v for k, v in wild.items()}))
            forged_slots += [None, 5, "x", {"id": 1}]  # the list of matches itself replaced
        for slot in forged_slots:
            body = {
                "output": key,
                "outputs": _outputs(key),
                "inputs": list(base["inputs"]),
                "state": list(base["state"]),
                "changedPropIds": [],
            }
            body[kind] = list(body[kind])
            body[kind][j] = slot
            trigger = slot if kind == "inputs" and isinstance(slot, (dict, list)) and slot else base["inputs"][0]
            try:
                body["changedPropIds"] = [_prop_id(trigger)]
            except (KeyError, TypeError, IndexError):
                body["changedPropIds"] = [_prop_id(base["inputs"][0])]
            yield f"{kind}[{j}] {d['id']}.{d['property']} = {_show(slot)}", body


def _show(slot) -> str:
    text = json.dumps(slot, default=str)
    return text if len(text) < 90 else text[:87] + "..."


def test_every_callback_survives_forged_values(app_client):
    app, http, root, job_id = app_client
    callbacks = {k: v for k, v in app.callback_map.items()}
    assert len(callbacks) >= 12, sorted(callbacks)  # every page's callbacks, plus Dash pages' own
    # The requests are well formed: unforged, each server-side callback answers (200, or 204 for no update).
    for key, cb in callbacks.items():
        if cb.get("callback") is None:  # clientside (Dash pages' title): the server has nothing to run
            continue
        body = next(_requests(key, cb))[1]
        body["inputs"] = [_slot(d, _baseline(d)) for d in cb["inputs"]]
        body["state"] = [_slot(d, _baseline(d)) for d in cb["state"]]
        assert http.post(ROUTE, json=body).status_code in (200, 204), key
    failures, sent, per_callback = [], 0, {}
    for key, cb in callbacks.items():
        for what, body in _requests(key, cb):
            r = http.post(ROUTE, json=body)
            sent += 1
            per_callback[key] = per_callback.get(key, 0) + 1
            if r.status_code >= 500:
                failures.append(f"{r.status_code} {key[:60]} <- {what}")
    assert set(per_callback) == set(callbacks), "every callback was fuzzed"
    assert not failures, f"{len(failures)} of {sent} forged requests gave a server error:\n" + "\n".join(failures[:40])
    # Nothing forged reached the queue, and the job the cancel callback was pointed at is untouched.
    assert [j["id"] for j in jobstore.list_jobs(root)] == [job_id]
    assert jobstore.read_job(job_id, root)["status"] == "running"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"output": "no-such.children", "outputs": {"id": "no-such", "property": "children"}, "inputs": []},
        {"output": "words-suggestions.children"},
        {"output": "words-suggestions.children", "outputs": [], "inputs": "x", "state": 5},
        [1, 2, 3],
        "just a string",
    ],
)
def test_malformed_callback_bodies_get_400(app_client, body):
    _, http, _, _ = app_client
    r = http.post(ROUTE, json=body)
    assert r.status_code == 400, (r.status_code, r.data[:300])
    assert b"Traceback" not in r.data


def test_the_named_forgeries_of_the_review(app_client):
    """The review's examples one by one: an int or a list as the autocomplete value, page_size "abc" and
    sort_by "bad" for the features table, a numeric cancel id. Each is a 4xx or an ignored update (204)."""
    _, http, root, job_id = app_client

    def post(output, outputs, inputs, state=(), changed=None):
        body = {"output": output, "outputs": outputs, "inputs": list(inputs), "state": list(state)}
        body["changedPropIds"] = [changed or _prop_id(inputs[0])]
        return http.post(ROUTE, json=body)

    loc = {"id": "_pages_location", "property": "search", "value": "?run=tiny"}
    for value in (5, ["word1"], {"a": 1}):
        r = post(
            "words-suggestions.children",
            {"id": "words-suggestions", "property": "children"},
            [{"id": "words-search", "property": "value", "value": value}],
            [loc],
        )
        assert r.status_code in (200, 204) or 400 <= r.status_code < 500, (value, r.status_code)
    table = [
        {"id": "features-table", "property": p, "value": v}
        for p, v in (("page_current", 0), ("page_size", "abc"), ("sort_by", "bad"), ("filter_query", ""))
    ]
    r = post(
        "..features-table.data...features-table.page_count..",
        [{"id": "features-table", "property": "data"}, {"id": "features-table", "property": "page_count"}],
        table,
        [loc],
    )
    assert r.status_code in (200, 204) or 400 <= r.status_code < 500, r.status_code
    key = next(k for k in _app_keys(http) if k.startswith("..jobs-message.children@"))
    cancel_id = {"job": 12345, "type": "jobs-cancel"}
    r = post(
        key,
        _outputs(key),
        [[{"id": cancel_id, "property": "n_clicks", "value": 1}]],
        [{"id": "jobs-refresh", "property": "data", "value": 0}],
        changed=_prop_id([{"id": cancel_id, "property": "n_clicks"}]),
    )
    assert r.status_code == 200, r.status_code  # answered with a message, not a crash
    assert "not valid" in r.get_data(as_text=True)
    assert jobstore.read_job(job_id, root)["status"] == "running"


def _app_keys(http):
    return [cb["output"] for cb in http.get("/_dash-dependencies").json]


def test_an_unauthenticated_empty_post_is_refused_with_auth_on():
    """With auth on, `{}` without credentials is a 400 (dash-auth reads the body's output before it asks for a
    password, and `{}` has none); a well-formed callback without credentials is a 401; with credentials `{}` is
    the same 400. Never a 500."""
    from dash import Dash, Input, Output, html

    from dashboard import guards
    from dashboard.components.jobs_auth import enable_auth

    app = Dash("fuzz_auth", on_error=guards.callback_failed)
    app.layout = html.Div([html.Div("hi", id="x"), html.Div(id="y")])
    app.callback(Output("y", "children"), Input("x", "children"))(lambda text: text.upper())
    guards.install(app)
    enable_auth(app, "alice:a1")
    http = app.server.test_client()
    assert http.post(ROUTE, json={}).status_code == 400
    well_formed = {
        "output": "y.children",
        "outputs": {"id": "y", "property": "children"},
        "inputs": [{"id": "x", "property": "children", "value": "hi"}],
        "changedPropIds": ["x.children"],
    }
    assert http.post(ROUTE, json=well_formed).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"alice:a1").decode()}
    assert http.post(ROUTE, json={}, headers=good).status_code == 400
    assert http.post(ROUTE, json=well_formed, headers=good).get_json()["response"]["y"]["children"] == "HI"
    forged = {**well_formed, "inputs": [{"id": "x", "property": "children", "value": 5}]}
    r = http.post(ROUTE, json=forged, headers=good)  # int.upper() fails: an ignored update
    assert r.status_code == 200 and r.get_json()["response"] == {}


def test_a_request_over_the_size_cap_is_refused_before_it_is_read(app_client):
    from dashboard.guards import MAX_REQUEST_BYTES

    _, http, _, _ = app_client
    big = {"output": "words-suggestions.children", "pad": "x" * (MAX_REQUEST_BYTES + 1)}
    assert http.post(ROUTE, json=big).status_code == 413


def test_an_unknown_group_in_the_url_gets_a_message(app_client):
    """/concepts?group=<a name the run lacks> says so (it used to show the empty explorer without a word)."""
    _, http, _, _ = app_client

    def concepts(search):
        body = {
            "output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [
                {"id": "_pages_location", "property": "pathname", "value": "/concepts"},
                {"id": "_pages_location", "property": "search", "value": search},
            ],
            "changedPropIds": ["_pages_location.search"],
            "state": [[]],  # ROUTING_STATE: the page markers on screen (none: a fresh page)
        }
        r = http.post(ROUTE, json=body)
        assert r.status_code == 200
        return r.get_data(as_text=True)

    text = concepts("?run=tiny&group=nope")
    assert "concepts-unknown-group" in text and "Run tiny has no concept group 'nope'; its groups: g." in text
    assert "concepts-unknown-group" not in concepts("?run=tiny&group=g")
