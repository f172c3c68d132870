"""The Words page's side panels: one word (its features, neighbours and vector), an unknown word (close
spellings), and a lasso selection (its words, shared features, concept groups, and what to do with it)."""

import dash_bootstrap_components as dbc
import numpy as np
from dash import dcc, html

from dashboard import figures
from dashboard.components.alerts import notice
from dashboard.components.contexts import vector_source, word_contexts_card
from dashboard.components.links import dim_link, feature_link, inline_list, word_href
from dashboard.components.widgets import bar_list, card, chips, graph
from dashboard.lib import wordsearch
from dashboard.lib.labels import feature_label, word_supersenses
from dashboard.lib.layer_profile import enhancement_note
from dashboard.lib.selection import group_counts, shared_features
from dashboard.lib.urls import href

BARS_UP_TO = 128  # dimensions drawn as bars; wider vectors as a heatmap strip
CONCEPT_WORDS = 200  # most words a selection hands to the Concepts page (in the URL)


def _word(run_id, word, label=None, keep=None):
    """A link to another word on this page that keeps the map as it is (projection, colouring, search)."""
    return dcc.Link(label or str(word), href=word_href(run_id, word, **(keep or {})), className="lx-link lx-word")


def pick_a_word():
    return card(
        "Pick a word",
        html.P(
            "Search above or click a point on the map: the word's SAE features, nearest neighbours and vector "
            "appear here, and its neighbours light up on the map. On a 2-D map, the lasso and box tools "
            "(top right of the map) select a region.",
            className="lx-muted mb-0",
        ),
    )


def unknown_word(v, word: str, keep=None):
    close = wordsearch.close_spellings(v, word)
    starting = [w for w in v.complete(word[:3], limit=8) if w not in close]
    parts = [f"'{word}' is not in the vocabulary of run {v.run_id}. "]
    if close:
        parts += ["Did you mean: ", *inline_list([_word(v.run_id, w, keep=keep) for w in close]), ". "]
    if starting:
        parts += ["Words starting like it: ", *inline_list([_word(v.run_id, w, keep=keep) for w in starting])]
    return notice(parts, color="warning", id="words-unknown")


def word_panel(v, row: int, keep=None):
    word = str(v.words[row])
    rid = v.run_id
    group = v.group[row]
    facts = [f"row {row}", f"Zipf {v.zipf[row]:.2f}" if np.isfinite(v.zipf[row]) else "Zipf unknown"]
    if 0 <= group < len(v.group_names):
        facts.append(f"group: {v.group_names[group]}")
    senses = word_supersenses(v, row)
    if senses:
        facts.append("WordNet: " + ", ".join(f"{name} {share:.2f}" for name, share in senses))
    parts = [
        html.H4(word, id="words-selected", className="mb-0"),
        html.Div(" · ".join(facts), className="lx-muted mb-2"),
        vector_source(v, row),
        _features(v, row),
        word_contexts_card(v, row),
    ]
    for enhanced, title in ((False, "Nearest neighbours (lit up on the map)"), (True, "… after isotropy enhancement")):
        nb = v.neighbors(row, enhanced=enhanced)
        if nb is None:
            continue
        idx, cos = nb
        note = enhancement_note(v) if enhanced else None
        parts.append(
            card(
                title,
                html.Div(note, className="lx-muted small", id="words-enhancement-note") if note else None,
                chips(
                    [_word(rid, v.words[j], f"{v.words[j]} {c:.2f}", keep) for j, c in zip(idx[:15], cos[:15])],
                    id="words-neighbors-enhanced" if enhanced else "words-neighbors",
                ),
            )
        )
    return html.Div(parts)


def _features(v, row):
    if not v.has_sae:
        return card("Top SAE features", html.P("This run has no SAE.", className="lx-muted mb-0"))
    feats, acts = v.word_features(row, limit=10)
    if not len(feats):
        return card("Top SAE features", html.P("No feature fires on this word.", className="lx-muted"))
    rows = [
        (
            html.Span([feature_link(v.run_id, f, f"#{f}"), html.Span(" " + feature_label(v, f), className="lx-muted")]),
            float(a),
        )
        for f, a in zip(feats, acts)
    ]
    return card("Top SAE features", bar_list(rows, id="words-features"))


VECTOR_ID = {"type": "words-vector", "id": "vector"}


def vector_card(v, row):
    """The word's vector. The card stays on the page and only its figure and text change with the word (a
    new graph per click would cost a plot set-up each time)."""
    title, fig, links = vector_parts(v, row)
    return html.Div(
        card(
            html.Span(title, id="words-vector-title"),
            graph(VECTOR_ID, fig, config={"displayModeBar": False}),
            html.Div(links, id="words-vector-links", className="lx-muted"),
        ),
        id="words-vector-card",
        hidden=row is None,
    )


def vector_parts(v, row):
    """(title, figure, links to its largest and outlier dimensions) of the word's vector; empty for no word."""
    if row is None:
        return "", {}, []
    rid = v.run_id
    vec = v.embeddings[row]
    outliers = v.outlier_dims
    if len(vec) <= BARS_UP_TO:
        fig = figures.dimension_bars(vec, outliers=outliers, title=None, y_label="value", height=200)
        title = "Vector (click a bar to open that dimension)"
    else:
        fig = figures.vector_strip(vec, outliers=outliers)
        title = f"Vector, {len(vec)} dimensions (click a cell to open that dimension; ▼ outlier dimensions)"
    top = np.argsort(-np.abs(vec))[:5]
    links = ["largest: ", *inline_list([dim_link(rid, d, f"dim {d}") for d in top])]
    if len(outliers):
        links += [" · outlier dims: ", *inline_list([dim_link(rid, d, f"{d}") for d in outliers[:10]])]
    return title, fig, links


def selection_panel(v, rows: np.ndarray, drawn: int, coloured: bool, keep=None):
    """The panel of a lasso or box selection (rows in row order, i.e. most frequent first)."""
    rid = v.run_id
    n = len(rows)
    if n == 0:
        return card(
            "Selection",
            html.P("No word inside the selection.", className="lx-muted mb-0"),
            html.Div(id="words-selection-count", children="0", hidden=True),
            id="words-selection-card",
        )
    words = [str(w) for w in v.words[rows]]
    concept = href("/concepts", run=rid, words=", ".join(words[:CONCEPT_WORDS]))
    head = f"{n:,} words selected" + (f" ({drawn:,} of them drawn)" if drawn != n else "")
    actions = html.Div(
        [
            dbc.Button(
                "Open as a concept",
                href=concept,
                id="words-selection-concept",
                size="sm",
                color="primary",
                className="me-2",
                external_link=False,
            ),
            dbc.Button(
                "Colour the map by it" if not coloured else "Colour the map as before",
                id={"type": "words-selection-colour", "id": "button"},
                size="sm",
                color="secondary",
                outline=True,
                className="me-2",
                n_clicks=0,
            ),
            dbc.Button(
                "Clear", id={"type": "words-selection-clear", "id": "button"}, size="sm", color="link", n_clicks=0
            ),
        ],
        className="mb-2",
    )
    parts = [
        html.Div(str(n), id="words-selection-count", hidden=True),
        actions,
        html.Div(
            f"the concept takes the {CONCEPT_WORDS} most frequent" if n > CONCEPT_WORDS else "",
            className="lx-muted",
        ),
        chips([_word(rid, w, keep=keep) for w in words[:60]], id="words-selection-words"),
    ]
    if n > 60:
        parts.append(html.Div(f"… and {n - 60:,} more (most frequent shown)", className="lx-muted"))
    shared = shared_features(v, rows)
    if shared:
        parts.append(html.H6("Features they share most", className="mt-2"))
        parts.append(
            bar_list(
                [
                    (
                        html.Span(
                            [
                                feature_link(rid, r["feature"], f"#{r['feature']}"),
                                html.Span(
                                    f" {feature_label(v, r['feature'])} · fires on {100 * r['recall']:.0f}%",
                                    className="lx-muted",
                                ),
                            ]
                        ),
                        r["score"],
                    )
                    for r in shared
                ],
                id="words-selection-features",
            )
        )
        parts.append(html.Div("score: F1 of recall and precision, as on the Concepts page", className="lx-muted"))
    groups = group_counts(v, rows)
    if groups:
        parts.append(html.H6("Concept groups", className="mt-2"))
        parts.append(
            html.Div(
                [
                    html.Div(f"{name}: {c:,} word(s), {100 * share:.0f}% of the group", className="lx-muted")
                    for name, c, share in groups[:10]
                ],
                id="words-selection-groups",
            )
        )
    return card(head, *parts, id="words-selection-card")
