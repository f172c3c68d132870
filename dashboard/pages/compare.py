"""Compare: two runs on the words they share (/compare?a=<run>&b=<run>&word=<word>). Linear CKA overall and per
concept label beside its shuffled-rows baseline, per-word neighbour overlap with the words that agree most and
least beside the random-overlap baseline, one word's neighbours in both runs side by side, and the features of
each run matched to the other's by activation correlation. Everything shown is read from the stored comparison
(compute/comparison.py writes it); a pair not compared yet gets a button that queues the comparison as a job.
Definitions: docs/layers.md "Comparing two runs"."""

import math

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.components.alerts import empty_store, guarded, notice
from dashboard.components.jobs_auth import current_user
from dashboard.components.links import labelled_feature_link, word_link
from dashboard.components.widgets import card, word_search
from dashboard.lib import compare as lib
from dashboard.lib import store
from dashboard.lib.labels import display_name
from dashboard.lib.runs import run_options
from dashboard.lib.urls import href, parse
from jobs import client
from jobs.policy import PlanError
from store import StoreError, comparisons
from store.schema import ROOT

dash.register_page(__name__, path="/compare", name="Compare", title="Lexiscope · compare", order=7)

SHOWN_WORDS = 15  # words that agree most / least
SHOWN_FEATURES = 12  # matched features per direction
SHOWN_LABELS = 60

# One line per score, on the page and in docs/layers.md "Comparing two runs".
DEFINITIONS = {
    "cka": "Linear CKA (Kornblith et al. 2019) of the two runs' vectors on the shared words: "
    "‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) with columns centred; 1 when one is a rotation and scaling of the other.",
    "cka_shuffled": "Baseline: the same CKA with run b's rows shuffled (unrelated vectors of the same sizes), "
    "mean of 5 shuffles.",
    "label": "Per label: CKA on that label's shared words only, centred within them, beside its own shuffled "
    "baseline (few words in many dimensions give a high baseline).",
    "jaccard": "Neighbour overlap of a word: Jaccard |A ∩ B| / |A ∪ B| of its 10 nearest neighbours by cosine in "
    "each run, both searched among the shared words.",
    "jaccard_random": "Baseline: the Jaccard of two random 10-word sets among the shared words.",
    "features": "Matched features: each SAE feature's best match in the other run by Pearson's r of their "
    "activations over the shared words (0 where a feature does not fire).",
    "features_shuffled": "Baseline: the median best r with the other run's words shuffled.",
}


def _fmt(x, digits=3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _url(a, b, word=None) -> str:
    return href("/compare", a=a, b=b, word=word)


def _definition(key):
    return html.Div(DEFINITIONS[key], className="lx-muted")


@guarded
def layout(a=None, b=None, word=None, run=None, **_):
    if store.runs_table().empty:
        return empty_store(store.catalog().root)
    if not a or not b:
        da, db = lib.default_pair(a or run)
        a, b = a or da, b or (db if db != a else None)
    options = run_options()
    pickers = dbc.Row(
        [
            dbc.Col([html.Small("run a", className="text-muted"), _picker("compare-a", options, a)], md=5),
            dbc.Col([html.Small("run b", className="text-muted"), _picker("compare-b", options, b)], md=5),
            dbc.Col(
                dcc.Link("swap a and b", href=_url(b, a, word), id="compare-swap", className="lx-link"),
                md=2,
                className="align-self-end",
            ),
        ],
        className="mb-2",
    )
    head = [dcc.Location(id="compare-nav", refresh="callback-nav"), pickers]
    bad = [r for r in (a, b) if r and not lib.is_run(r)]
    if bad:
        shown = bad[0] if len(bad[0]) <= 60 else bad[0][:57] + "..."
        return html.Div(
            [*head, notice(f"Run '{shown}' is not in this store; pick a run above.", "warning", id="compare-error")]
        )
    if not a or not b or a == b:
        return html.Div([*head, notice("Pick two different runs to compare.", "info", id="compare-error")])
    c = lib.comparison(a, b)
    if c is None:
        return html.Div([*head, not_compared(a, b)])
    va, vb = store.view(a), store.view(b)
    stale = []
    if comparisons.is_stale(c.attrs, va.attrs.get(ROOT.created), vb.attrs.get(ROOT.created)):
        stale = [
            notice(
                [
                    "A run was recomputed after this comparison; to refresh it: ",
                    html.Code(f"lexiscope compare {a} {b}"),
                ],
                "warning",
                id="compare-stale",
            )
        ]
    return html.Div(
        [
            *head,
            *stale,
            dbc.Row([dbc.Col(summary(c, va, vb), lg=5), dbc.Col(label_table(c, va), lg=7)]),
            dbc.Row([dbc.Col(overlap_table(c), lg=5), dbc.Col(word_box(c, va, vb, word), lg=7)]),
            features_section(c, va, vb),
        ]
    )


def _picker(id, options, value):
    return dcc.Dropdown(id=id, options=options, value=value, clearable=False, searchable=True, optionHeight=32)


def not_compared(a, b):
    return card(
        "Not compared yet",
        html.P(
            [
                "Runs ",
                html.Code(a),
                " and ",
                html.Code(b),
                " have not been compared. Queue the comparison as a job (it reads both runs and writes a "
                "comparison file; seconds for small runs, about a minute for 20,000 words), or from a shell: ",
                html.Code(f"lexiscope compare {a} {b}"),
                ".",
            ]
        ),
        dbc.Button("Compare these runs", id="compare-queue", color="primary", n_clicks=0),
        dcc.Interval(id="compare-wait", interval=2000, disabled=True),
        html.Div(id="compare-message", className="mt-2"),
        id="compare-missing",
    )


def summary(c, va, vb):
    at = c.attrs
    n = at.get("n_shared", 0)
    rows = [
        ("linear CKA", at.get("cka"), "cka", "compare-cka"),
        ("CKA, shuffled rows", lib.mean_shuffled(at), "cka_shuffled", "compare-cka-shuffled"),
        ("neighbour overlap (mean Jaccard, top 10)", at.get("jaccard_mean"), "jaccard", "compare-jaccard"),
        ("random overlap", at.get("jaccard_random"), "jaccard_random", "compare-jaccard-random"),
    ]
    if at.get("feature_r_median") is not None:
        rows += [
            ("matched features: median best r (a → b)", at.get("feature_r_median"), "features", "compare-feature-r"),
            ("with b's words shuffled", at.get("feature_r_shuffled"), "features_shuffled", "compare-feature-r0"),
        ]
    body = [
        html.Tr([html.Th(name, className="fw-normal"), html.Td(_fmt(value, 4), id=id, className="lx-num")])
        for name, value, _, id in rows
    ]
    return card(
        "The two runs on their shared words",
        html.Div(
            [
                "a: ",
                dcc.Link(va.label, href=href("/words", run=va.run_id), className="lx-link lx-run"),
                html.Br(),
                "b: ",
                dcc.Link(vb.label, href=href("/words", run=vb.run_id), className="lx-link lx-run"),
                html.Br(),
                f"{n:,} shared words (a has {va.n:,}, b has {vb.n:,})",
            ],
            className="small mb-2",
        ),
        dbc.Table(html.Tbody(body), size="sm", className="lx-table mb-2", id="compare-summary"),
        *[_definition(key) for _, _, key, _ in rows],
        id="compare-summary-card",
    )


def label_table(c, va):
    names = c.get("labels.names")
    if names is None or not len(names):
        return card("CKA per concept label", html.P("Run a stores no concept labels.", className="lx-muted"))
    cka, base, n = c["labels.cka"], c["labels.shuffled"], c["labels.n"]
    order = [i for i in np.argsort(-np.nan_to_num(cka, nan=-1.0), kind="stable") if np.isfinite(cka[i])]
    rows = [
        html.Tr(
            [
                html.Td(
                    dcc.Link(
                        display_name(str(names[i])),
                        href=href("/concepts", run=va.run_id, group=display_name(str(names[i]))),
                        className="lx-link lx-label",
                    )
                ),
                html.Td(f"{int(n[i]):,}", className="lx-num"),
                html.Td(_fmt(float(cka[i])), className="lx-num"),
                html.Td(_fmt(float(base[i])), className="lx-num text-muted"),
            ]
        )
        for i in order[:SHOWN_LABELS]
    ]
    head = html.Thead(html.Tr([html.Th("label"), html.Th("words"), html.Th("CKA"), html.Th("shuffled")]))
    return card(
        "CKA per concept label",
        html.Div(
            dbc.Table([head, html.Tbody(rows)], size="sm", className="lx-table mb-1", id="compare-labels"),
            style={"maxHeight": "22rem", "overflowY": "auto"},
        ),
        _definition("label"),
    )


def overlap_table(c):
    words, jac = c.words, c["jaccard"]
    a, b = c.attrs["run_a"], c.attrs["run_b"]

    def column(positions, id):
        return html.Tbody(
            [
                html.Tr(
                    [
                        html.Td(dcc.Link(str(words[p]), href=_url(a, b, str(words[p])), className="lx-link lx-word")),
                        html.Td(_fmt(float(jac[p]), 2), className="lx-num"),
                    ]
                )
                for p in positions[:SHOWN_WORDS]
            ],
            id=id,
        )

    head = html.Thead(html.Tr([html.Th("word"), html.Th("Jaccard")]))
    return card(
        "Neighbour overlap per word",
        dbc.Row(
            [
                dbc.Col([html.Small("agree most"), dbc.Table([head, column(c["most_agree"], "compare-most")])]),
                dbc.Col([html.Small("agree least"), dbc.Table([head, column(c["least_agree"], "compare-least")])]),
            ],
            className="lx-table small",
            id="compare-overlap",
        ),
        html.Div(
            f"mean {_fmt(c.attrs.get('jaccard_mean'))} · random {_fmt(c.attrs.get('jaccard_random'), 4)}; "
            "a word opens its neighbours in both runs.",
            className="lx-muted",
        ),
        _definition("jaccard"),
    )


def word_box(c, va, vb, word):
    body = []
    if word:
        p = c.find(word)
        if p is None:
            shown = word if len(word) <= 40 else word[:37] + "..."
            body.append(
                notice(
                    f"'{shown}' is not among the {len(c.words):,} words both runs share.",
                    "warning",
                    id="compare-word-missing",
                )
            )
        else:
            body.append(word_neighbours(c, va, vb, p))
    return card(
        "One word in both runs",
        word_search("compare", value=word, placeholder="a shared word…"),
        html.Div(body, id="compare-word", className="mt-2"),
    )


def word_neighbours(c, va, vb, p):
    words = c.words
    na, nb = c["neighbours_a"][p], c["neighbours_b"][p]
    both = set(na.tolist()) & set(nb.tolist())

    def column(v, neighbours, side):
        return html.Ol(
            [
                html.Li(
                    word_link(v.run_id, str(words[q]), className="lx-link lx-word" + (" fw-bold" if q in both else ""))
                )
                for q in neighbours
            ],
            id=f"compare-neighbours-{side}",
            className="mb-0 small",
        )

    w = str(words[p])
    return html.Div(
        [
            html.Div(
                [
                    html.B(w),
                    f" · Jaccard {_fmt(float(c['jaccard'][p]), 2)} ({len(both)} of 10 shared, in bold) · word page in ",
                    word_link(va.run_id, w, "a", id="compare-word-a"),
                    ", ",
                    word_link(vb.run_id, w, "b", id="compare-word-b"),
                ],
                className="small mb-1",
            ),
            dbc.Row(
                [
                    dbc.Col([html.Small(va.label, className="text-muted"), column(va, na, "a")]),
                    dbc.Col([html.Small(vb.label, className="text-muted"), column(vb, nb, "b")]),
                ]
            ),
        ]
    )


def features_section(c, va, vb):
    if c.get("features.a_to_b") is None or not (va.has_sae and vb.has_sae):
        return card("Matched features", html.P("Both runs need an SAE to match features.", className="lx-muted"))

    def table(v_from, v_to, idx, r, id):
        order = [int(f) for f in np.argsort(-np.nan_to_num(r, nan=-2.0), kind="stable")[:SHOWN_FEATURES] if idx[f] >= 0]
        rows = [
            html.Tr(
                [
                    html.Td(labelled_feature_link(v_from, f), className="text-truncate"),
                    html.Td(labelled_feature_link(v_to, int(idx[f])), className="text-truncate"),
                    html.Td(_fmt(float(r[f]), 2), className="lx-num"),
                ]
            )
            for f in order
        ]
        head = html.Thead(
            html.Tr(
                [
                    html.Th(f"feature of {v_from.label}"),
                    html.Th(f"best match in {v_to.label}"),
                    html.Th("r", style={"width": "3.5rem"}),
                ]
            )
        )
        return dbc.Table(
            [head, html.Tbody(rows)], size="sm", className="lx-table small", id=id, style={"tableLayout": "fixed"}
        )

    return card(
        "Matched features (best activation correlation on the shared words)",
        dbc.Row(
            [
                dbc.Col(table(va, vb, c["features.a_to_b"], c["features.a_to_b_r"], "compare-features-ab"), lg=6),
                dbc.Col(table(vb, va, c["features.b_to_a"], c["features.b_to_a_r"], "compare-features-ba"), lg=6),
            ]
        ),
        _definition("features"),
        _definition("features_shuffled"),
    )


# ---------------------------------------------------------------- callbacks


@callback(
    Output("compare-nav", "href"),
    Input("compare-a", "value"),
    Input("compare-b", "value"),
    Input("compare-search", "n_submit"),
    Input("compare-go", "n_clicks"),
    State("compare-search", "value"),
    State("_pages_location", "search"),
    prevent_initial_call=True,
)
def navigate(a, b, _submit, _go, word, search):
    """The URL is the state: a picked run or a searched word becomes ?a=&b=&word=."""
    q = parse(search)
    if ctx.triggered_id in ("compare-a", "compare-b"):
        url = _url(a, b, q.get("word"))
    elif ctx.triggered_id in ("compare-search", "compare-go"):
        url = _url(a or q.get("a"), b or q.get("b"), (word or "").strip()[:100] or None)
    else:
        raise PreventUpdate
    if url == _url(q.get("a"), q.get("b"), q.get("word")):
        raise PreventUpdate
    return url


@callback(
    Output("compare-message", "children"),
    Output("compare-wait", "disabled"),
    Input("compare-queue", "n_clicks"),
    State("compare-a", "value"),
    State("compare-b", "value"),
    prevent_initial_call=True,
)
def queue_comparison(n, a, b):
    """Queue the comparison of the picked runs as a job (jobs.client validates the ids: a forged one is refused)."""
    if not n:
        raise PreventUpdate
    root = store.catalog().root
    try:
        job = client.submit_compare(a, b, root, user=current_user())
        client.ensure_embedded_worker(root)
    except (PlanError, StoreError, client.QueueError) as e:
        return dbc.Alert(str(e), color="danger", className="py-2 mb-0", id="compare-queue-error"), True
    return (
        html.Div(
            dbc.Alert(
                [
                    "Queued job ",
                    dcc.Link(job["id"], href="/jobs", className="lx-link"),
                    f" ({job['status']}); this page shows the comparison when it is done.",
                ],
                color="success",
                className="py-2 mb-0",
            ),
            id="compare-queued",
            **{"data-job": job["id"]},
        ),
        False,
    )


@callback(
    Output("compare-message", "children", allow_duplicate=True),
    Output("compare-wait", "disabled", allow_duplicate=True),
    Input("compare-wait", "n_intervals"),
    State("compare-a", "value"),
    State("compare-b", "value"),
    prevent_initial_call=True,
)
def wait_for_comparison(_n, a, b):
    """While a queued comparison runs: once its file is stored, a link to the page that shows it."""
    if not a or not b or lib.comparison(a, b) is None:
        raise PreventUpdate
    return (
        dbc.Alert(
            ["Done: ", html.A("show the comparison", href=_url(a, b), id="compare-ready", className="lx-link")],
            color="success",
            className="py-2 mb-0",
        ),
        True,
    )
