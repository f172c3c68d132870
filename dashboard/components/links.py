"""Every mention of a word, feature or dimension is a link that carries the run in the URL."""

from dash import dcc

from dashboard.lib.labels import feature_label
from dashboard.lib.urls import href


def word_href(run_id, word, **extra) -> str:
    return href("/words", run=run_id, word=word, **extra)


def feature_href(run_id, feature, **extra) -> str:
    return href("/features", run=run_id, feature=int(feature), **extra)


def dim_href(run_id, dim, **extra) -> str:
    return href("/dimensions", run=run_id, dim=int(dim), **extra)


def word_link(run_id, word, label=None, **kw):
    return dcc.Link(
        label if label is not None else str(word),
        href=word_href(run_id, word),
        className=kw.pop("className", "lx-link lx-word"),
        **kw,
    )


def feature_link(run_id, feature, label=None, **kw):
    return dcc.Link(
        label if label is not None else f"#{int(feature)}",
        href=feature_href(run_id, feature),
        className=kw.pop("className", "lx-link lx-feature"),
        **kw,
    )


def labelled_feature_link(v, feature, suffix: str = "", **kw):
    """A link to feature f of run view `v` that says what it is about: `#12 noun.animal 0.51 · deer, whales,
    birds` (dashboard.lib.labels.feature_label), then `suffix`."""
    f = int(feature)
    name = feature_label(v, f)
    return feature_link(v.run_id, f, f"#{f} {name}{suffix}" if name else f"#{f}{suffix}", title=name, **kw)


def dim_link(run_id, dim, label=None, **kw):
    return dcc.Link(
        label if label is not None else f"dim {int(dim)}",
        href=dim_href(run_id, dim),
        className=kw.pop("className", "lx-link lx-dim"),
        **kw,
    )


def run_link(run_id, label=None, page="/words"):
    return dcc.Link(label or run_id, href=href(page, run=run_id), className="lx-link lx-run")


def inline_list(items, sep=", "):
    """Interleave components with a separator, for lists of links."""
    out = []
    for k, item in enumerate(items):
        if k:
            out.append(sep)
        out.append(item)
    return out
