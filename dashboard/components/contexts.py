"""Features in context: the "Top contexts" card of a feature page, the "Contexts and senses" card of a word
page, and the line saying where a word's vector comes from. Every word of a sentence links to its word page;
the firing token's word is highlighted, its colour as strong as its activation relative to the feature's max."""

import numpy as np
from dash import html

from dashboard.components.links import feature_link, word_link
from dashboard.components.widgets import card
from dashboard.lib import contexts as lib
from dashboard.lib.labels import feature_label


def _sentence(v, ctx: lib.Context, strength: float | None, hit_class: str):
    """One sentence as word links; the hit's background alpha is `strength` (0-1)."""
    out = []
    for text, is_word, is_hit in lib.pieces(ctx.text, ctx.span):
        row = v.find(text) if is_word else None
        if is_hit:
            style = {"backgroundColor": f"rgba(255, 120, 0, {0.15 + 0.85 * max(0.0, min(1.0, strength or 1.0)):.2f})"}
            label = (
                word_link(v.run_id, v.words[row], text, className=f"lx-link {hit_class}") if row is not None else text
            )
            out.append(html.Mark(label, className="lx-ctx-hit", style=style, title=f"activation {ctx.act:.3f}"))
        elif row is not None:
            out.append(word_link(v.run_id, v.words[row], text, className="lx-link lx-ctx-word"))
        else:
            out.append(text)
    return out


def _row(v, ctx: lib.Context, max_act: float):
    return html.Div(
        [
            html.Span(f"{ctx.act:.2f}", className="lx-ctx-act"),
            html.Span(_sentence(v, ctx, ctx.act / max_act, "lx-ctx-link")),
        ],
        className="lx-ctx-row",
    )


def top_contexts_card(v, f: int):
    """Feature f's top corpus contexts and quantile samples; None when the run stores no contexts."""
    if not lib.has_contexts(v):
        return None
    top, groups = lib.feature_contexts(v, f)
    a = v.run.attrs_of("contexts")
    dens = v.run.get("contexts/token_density")
    head = html.Div(
        f"The corpus tokens on which the feature fires most ({a.get('n_tokens', 0):,} tokens of "
        f"{a.get('n_sentences', 0):,} sentences streamed through this layer's SAE); the highlighted word holds the "
        f"token, coloured by activation / max. Token density {float(dens[f]):.4%} "
        f"(share of corpus tokens on which it fires).",
        className="lx-muted mb-2",
    )
    if not top:
        return card(
            "Top contexts",
            head,
            html.P("The feature fires on no corpus token.", className="lx-muted"),
            id="contexts-top",
        )
    max_act = max(top[0].act, 1e-9)
    quantiles = []
    for q, group in enumerate(groups):
        if group:
            lo, hi = min(c.act for c in group), max(c.act for c in group)
            quantiles.append(html.Div(f"interval {q + 1} ({lo:.2f}–{hi:.2f})", className="lx-ctx-interval"))
            quantiles += [_row(v, c, max_act) for c in group]
    return card(
        "Top contexts",
        head,
        html.Div([_row(v, c, max_act) for c in top], id="contexts-top-list"),
        html.Details(
            [
                html.Summary("Quantile samples: (0, max] in 5 equal intervals, a random sample of each"),
                html.Div(quantiles, id="contexts-quantiles"),
            ],
            open=True,
        )
        if quantiles
        else None,
        id="contexts-top",
    )


def vector_source(v, row: int):
    """'mean over n corpus contexts' or 'encoded alone'; None for static runs."""
    n = lib.n_contexts(v, row)
    if n is None:
        return None
    text = (
        f"vector: mean over {n:,} corpus context{'s' if n != 1 else ''}"
        if n
        else ("vector: the word encoded alone (it is not in the corpus)")
    )
    return html.Div(text, id="words-vector-source", className="lx-muted mb-2")


def word_contexts_card(v, row: int):
    """The word's corpus contexts grouped by dominant feature (its senses, as the SAE sees them)."""
    if not lib.has_contexts(v):
        return None
    ctxs = lib.word_contexts(v, row)
    if not ctxs:
        return card(
            "Contexts and senses",
            html.P("The word does not occur in this run's corpus.", className="lx-muted mb-0"),
            id="words-contexts",
        )
    feats = np.array([[f for f, _ in c.features[:1]] or [-1] for c in ctxs])
    acts = np.array([[x for _, x in c.features[:1]] or [0.0] for c in ctxs])
    n = lib.n_contexts(v, row) or len(ctxs)
    shown = f"{len(ctxs)} of its {n:,} corpus contexts (a seeded sample)" if n > len(ctxs) else f"{n} corpus contexts"
    body = [
        html.Div(
            f"{shown}, grouped by the feature most active on the word there (the mean of its sub-token vectors): "
            "each group is one sense as the SAE sees it. Beside each context, its 3 most active features "
            "(hover for their labels).",
            className="lx-muted mb-2",
        )
    ]
    for k, g in enumerate(lib.senses(feats, acts)):
        f = g["feature"]
        body.append(
            html.Div(
                [
                    html.B(f"sense {k + 1}: "),
                    feature_link(v.run_id, f, f"#{f}"),
                    html.Span(
                        f" {feature_label(v, f)} · {len(g['rows'])} context{'s' if len(g['rows']) != 1 else ''}",
                        className="lx-muted",
                    ),
                ],
                className="lx-ctx-interval",
            )
        )
        for i in g["rows"]:
            c = ctxs[i]
            body.append(
                html.Div(
                    [
                        html.Span(_sentence(v, c, None, "lx-ctx-self")),
                        html.Span(
                            [
                                " ",
                                *[
                                    feature_link(
                                        v.run_id,
                                        ff,
                                        f"#{ff} {x:.1f}",
                                        className="lx-link lx-ctx-feat",
                                        title=f"#{ff} {feature_label(v, ff)} (activation {x:.2f})",
                                    )
                                    for ff, x in c.features[:3]
                                ],
                            ],
                            className="lx-ctx-feats",
                        ),
                    ],
                    className="lx-ctx-row lx-ctx-word-row",
                )
            )
    return card("Contexts and senses", *body, id="words-contexts")
