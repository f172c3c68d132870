"""Jobs: a form that queues a new run (validated first), and the live list of every user's jobs with their
owners, read from the store's job records every second. /jobs?from_run=<run_id> prefills the form from that run.
With auth on, a job's Cancel button is there only for its owner and the policy's admins (and checked again by
jobs.client.cancel); without auth nobody has a name, so anyone may cancel (docs/jobs.md)."""

import json

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard.components.alerts import guarded, notice
from dashboard.components.jobs_auth import auth_enabled, current_user
from dashboard.components.jobs_form import DEFAULTS, config_form, form_config, run_groups
from dashboard.components.widgets import card
from dashboard.lib import store
from dashboard.lib.urls import href
from jobs import client
from jobs.policy import PlanError, Policy
from store import StoreError
from store import jobs as jobstore

dash.register_page(__name__, path="/jobs", name="Jobs", title="Lexiscope · jobs", order=90)

FIELDS = (
    "model",
    "name",
    "layers",
    "vocab_mode",
    "top_n",
    "words",
    "groups_source",
    "groups_text",
    "sae_arch",
    "d_sae",
    "k",
    "l1",
    "steps",
    "umap",
    "corpus",
    "train_on",
)
STATUS_COLOURS = {
    "queued": "secondary",
    "running": "primary",
    "done": "success",
    "failed": "danger",
    "cancelled": "warning",
}
MAX_SHOWN = 50


def _root():
    return store.catalog().root


def _field(label, control, help=None):
    return dbc.Row(
        [
            dbc.Label(label, width=4, className="col-form-label-sm"),
            dbc.Col([control, dbc.FormText(help) if help else None], width=8),
        ],
        className="mb-2",
    )


def _group_options():
    opts = [
        {"label": "default groups (animals, colours, …)", "value": "default"},
        {"label": "none", "value": "none"},
        {"label": "paste my own…", "value": "paste"},
    ]
    try:
        table = store.runs_table()
    except Exception:
        return opts
    for rid in [] if table.empty else table["run_id"]:
        opts.append({"label": f"as stored in run {rid}", "value": f"run:{rid}"})
    return opts


def form(values: dict, models: list[str]):
    v = {**DEFAULTS, **values}
    num = dict(type="number", size="sm", debounce=False)
    return html.Div(
        [
            _field(
                "model",
                dbc.Select(
                    id="jobs-model",
                    options=[{"label": m, "value": m} for m in models],
                    size="sm",
                    value=v["model"] if v["model"] in models else (models or [None])[0],
                ),
                "models this server allows",
            ),
            _field("name", dbc.Input(id="jobs-name", value=v["name"], size="sm", placeholder="optional")),
            _field(
                "layers",
                dbc.Input(id="jobs-layers", value=v["layers"], size="sm"),
                "'all', or numbers and ranges: 0, 3, 5-6 (static vectors have layer 0)",
            ),
            _field(
                "vocabulary",
                dbc.RadioItems(
                    id="jobs-vocab-mode",
                    value=v["vocab_mode"],
                    inline=True,
                    options=[{"label": "top N words", "value": "top"}, {"label": "my word list", "value": "words"}],
                ),
            ),
            _field(
                "N words",
                dbc.Input(id="jobs-top-n", value=v["top_n"], min=0, step=1, **num),
                "most frequent English words (wordfreq)",
            ),
            _field(
                "word list",
                dbc.Textarea(
                    id="jobs-words",
                    value=v["words"],
                    rows=2,
                    size="sm",
                    placeholder="words, one a line or comma-separated",
                ),
                "used alone with 'my word list', added to the top N otherwise",
            ),
            _field(
                "concept groups",
                dbc.Select(id="jobs-groups-source", options=_group_options(), value=v["groups_source"], size="sm"),
            ),
            _field(
                "",
                dbc.Textarea(
                    id="jobs-groups-text",
                    value=v["groups_text"],
                    rows=3,
                    size="sm",
                    placeholder="animals: dog, cat, horse\ncolours: red, green, blue",
                ),
                "with 'paste my own…': one group a line",
            ),
            _field(
                "SAE",
                dbc.Select(
                    id="jobs-sae-arch",
                    value=v["sae_arch"],
                    size="sm",
                    options=[
                        {"label": "TopK", "value": "topk"},
                        {"label": "BatchTopK", "value": "batch_topk"},
                        {"label": "ReLU + L1", "value": "relu_l1"},
                        {"label": "no SAE", "value": "none"},
                    ],
                ),
            ),
            _field("width (d_sae)", dbc.Input(id="jobs-d-sae", value=v["d_sae"], min=1, step=1, **num)),
            _field("k (TopK, BatchTopK)", dbc.Input(id="jobs-k", value=v["k"], min=1, step=1, **num)),
            _field("L1 (ReLU)", dbc.Input(id="jobs-l1", value=v["l1"], min=0, step="any", **num)),
            _field("steps", dbc.Input(id="jobs-steps", value=v["steps"], min=1, step=1, **num)),
            _field(
                "corpus (transformers)",
                dbc.Input(id="jobs-corpus", value=v["corpus"], size="sm", placeholder="lee, stsb:en"),
                "named sources, comma-separated: lee, stsb:<lang> (every split of STS-B)",
            ),
            _field(
                "SAE trains on",
                dbc.Select(
                    id="jobs-train-on",
                    value=v["train_on"],
                    size="sm",
                    options=[
                        {"label": "default (tokens for transformers)", "value": "default"},
                        {"label": "corpus tokens", "value": "tokens"},
                        {"label": "word types", "value": "words"},
                    ],
                ),
            ),
            _field("UMAP maps", dbc.Checkbox(id="jobs-umap", value=bool(v["umap"]), label="compute the 2D/3D maps")),
            dbc.Button("Queue run", id="jobs-submit", color="primary", n_clicks=0, className="mt-1"),
            html.Div(id="jobs-message", className="mt-2"),
        ],
        id="jobs-form",
    )


def _prefill(from_run: str | None):
    """Form values from a stored run, and a note saying so (or why not)."""
    if not from_run:
        return {}, None
    try:
        v = store.view(from_run)
        values = config_form(v.run.config, layer=v.layer if v.is_contextual else None, run_id=from_run)
        return values, notice(
            ["Prefilled from run ", html.Code(from_run), ": change the SAE (or anything else) and queue it."],
            className="py-2",
        )
    except StoreError as e:
        return {}, notice(f"Cannot prefill from run {from_run}: {e}", color="warning", className="py-2")


@guarded
def layout(from_run=None, **_):
    try:
        models = Policy.load().models
        policy_note = None
    except PlanError as e:
        models, policy_note = [], notice(str(e), color="danger")
    values, note = _prefill(from_run)
    url = client.broker_url(_root())
    mode = (
        "embedded queue (a local worker runs one job at a time)"
        if client.is_embedded(url)
        else f"broker {client.safe_url(url)} (any number of GPU workers)"
    )
    return html.Div(
        [
            dcc.Interval(id="jobs-interval", interval=1000),
            dcc.Store(id="jobs-refresh", data=0),
            dcc.Store(id="jobs-signature", data=None),
            dbc.Row(
                [
                    dbc.Col(
                        card("Queue a new run", *(n for n in (policy_note, note) if n), form(values, models)), lg=5
                    ),
                    dbc.Col(
                        card(
                            "Jobs (everyone's, newest first)",
                            html.Small(f"Store {_root()} · {mode}", className="text-muted d-block mb-2"),
                            html.Div(job_list(), id="jobs-list"),
                        ),
                        lg=7,
                    ),
                ]
            ),
        ]
    )


def _viewer() -> str | None:
    """The user whose rights apply to this request: the basic-auth name, or None without auth (no names)."""
    return current_user() if auth_enabled() else None


def job_row(job: dict, viewer: str | None = None, admins=()):
    jid, status = job["id"], job["status"]
    pct = round(100 * (job.get("progress") or 0))
    cfg = job.get("config") or {}
    title = cfg.get("name") or cfg.get("model")
    sae = cfg.get("sae")
    what = f"{title} · layers {cfg.get('layers')}" + (
        f" · SAE {sae.get('arch')} {sae.get('d_sae') or ''}" if sae else ""
    )
    compare = job.get("kind") == "compare"
    if compare:  # two stored runs compared (jobs.client.submit_compare)
        what = f"compare {cfg.get('run_a')} with {cfg.get('run_b')}"
    bar = dbc.Progress(
        value=pct,
        label=f"{pct}%",
        striped=status == "running",
        animated=status == "running",
        color=STATUS_COLOURS.get(status, "secondary"),
        className="lx-job-progress",
        style={"height": "1.1rem"},
    )
    details = []
    if status == "running" and job.get("cancel_requested"):
        details.append(html.Span("cancelling…", className="text-warning me-2"))
    if status in ("running", "queued"):
        details.append(html.Span(job.get("stage") or "", className="text-muted lx-job-stage"))
    if job.get("error"):
        details.append(html.Span(job["error"], className="text-danger lx-job-error"))
    if compare and status == "done":
        details.append(
            dcc.Link(
                "open the comparison",
                href=href("/compare", a=cfg.get("run_a"), b=cfg.get("run_b")),
                className="lx-link lx-job-compare me-2",
            )
        )
    elif job.get("run_ids"):
        details.append(
            html.Span(
                [
                    "runs: ",
                    *[
                        dcc.Link(r, href=href("/words", run=r), className="lx-link lx-job-run me-2")
                        for r in job["run_ids"]
                    ],
                ]
            )
        )
    cancel = (
        dbc.Button(
            "Cancel",
            id={"type": "jobs-cancel", "job": jid},
            size="sm",
            color="outline-danger",
            n_clicks=0,
            className="py-0",
        )
        if status in jobstore.ACTIVE and (viewer is None or viewer == job.get("user") or viewer in admins)
        else None
    )
    when = f"{(job.get('submitted') or '')[:19].replace('T', ' ')}"
    if job.get("worker"):
        when += f" · {job['worker']} ({job.get('device') or '?'})"
    return html.Div(
        [
            html.Div(
                [
                    dbc.Badge(status, color=STATUS_COLOURS.get(status, "secondary"), className="me-2 lx-job-status"),
                    html.B(what, className="me-2"),
                    html.Span(
                        ["owner ", html.B(job.get("user") or "?")], className="me-2 small lx-job-owner", title="owner"
                    ),
                    html.Small(when, className="text-muted"),
                    html.Span(cancel, className="float-end"),
                ]
            ),
            bar,
            html.Small(details, className="d-block"),
        ],
        id=f"job-{jid}",
        className="lx-job mb-2 pb-2 border-bottom",
        **{"data-status": status},
    )


def _jobs() -> list[dict]:
    jobs = client.list_jobs(_root())[:MAX_SHOWN]
    if any(j["status"] == "queued" for j in jobs):
        client.ensure_embedded_worker(_root())  # e.g. jobs left queued when the server restarted
    return jobs


def job_list(jobs: list[dict] | None = None):
    jobs = _jobs() if jobs is None else jobs
    if not jobs:
        return html.P(
            "No jobs yet. Queue one with the form, or from a shell: lexiscope precompute PLAN --queue",
            className="text-muted",
            id="jobs-empty",
        )
    viewer = _viewer()
    admins = _admins() if viewer is not None else ()
    return [job_row(j, viewer, admins) for j in jobs]


def _admins() -> list[str]:
    try:
        return Policy.load().admins
    except PlanError:
        return []


def _signature(jobs: list[dict]) -> str:
    keys = ("id", "status", "progress", "stage", "error", "run_ids", "cancel_requested", "worker", "device")
    return json.dumps([[j.get(k) for k in keys] for j in jobs], default=str)


@callback(
    Output("jobs-list", "children"),
    Output("jobs-signature", "data"),
    Input("jobs-interval", "n_intervals"),
    Input("jobs-refresh", "data"),
    State("jobs-signature", "data"),
)
def refresh(_n, _r, seen):
    """Redraw the list only when a job changed (a redraw under the pointer would eat a click)."""
    jobs = _jobs()
    sig = _signature(jobs)
    if sig == seen and ctx.triggered_id == "jobs-interval":
        raise PreventUpdate
    return job_list(jobs), sig


def _stored_groups(run_id: str) -> dict:
    v = store.view(run_id)
    return run_groups(v.words, v.group, v.group_names)


@callback(
    Output("jobs-message", "children"),
    Output("jobs-refresh", "data"),
    Input("jobs-submit", "n_clicks"),
    State("jobs-refresh", "data"),
    *[State(f"jobs-{f.replace('_', '-')}", "value") for f in FIELDS],
    prevent_initial_call=True,
)
def queue_run(n, refresh_count, *values):
    if not n:
        raise PreventUpdate
    try:
        cfg = form_config(dict(zip(FIELDS, values)), stored_groups=_stored_groups)
        job = client.submit(cfg, _root(), user=current_user())
        client.ensure_embedded_worker(_root())  # after the job is queued: a refused request starts nothing
    except (PlanError, StoreError, client.QueueError) as e:
        return dbc.Alert(str(e), color="danger", className="py-2 mb-0", id="jobs-error"), no_update
    return (
        html.Div(
            dbc.Alert(["Queued job ", html.Code(job["id"]), "."], color="success", className="py-2 mb-0"),
            id="jobs-queued",
            **{"data-job": job["id"]},
        ),
        (refresh_count or 0) + 1,
    )


@callback(
    Output("jobs-message", "children", allow_duplicate=True),
    Output("jobs-refresh", "data", allow_duplicate=True),
    Input({"type": "jobs-cancel", "job": ALL}, "n_clicks"),
    State("jobs-refresh", "data"),
    prevent_initial_call=True,
)
def cancel_job(clicks, refresh_count):
    if not isinstance(ctx.triggered_id, dict) or not ctx.triggered[0]["value"]:
        raise PreventUpdate
    job_id = ctx.triggered_id.get("job")
    try:
        job = client.cancel(job_id, _root(), user=_viewer())
    except (client.JobFinished, client.NotAllowed) as e:
        return dbc.Alert(str(e), color="warning", className="py-2 mb-0", id="jobs-cancel-refused"), no_update
    except StoreError as e:
        return dbc.Alert(str(e), color="danger", className="py-2 mb-0", id="jobs-cancel-refused"), no_update
    word = "cancelled" if job["status"] == "cancelled" else "stopping at its next step"
    return dbc.Alert(f"Job {job_id}: {word}.", color="warning", className="py-2 mb-0"), (refresh_count or 0) + 1
