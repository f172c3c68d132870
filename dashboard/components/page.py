"""The frame every run page shares: empty-store page, run resolution and contained failures."""

import functools

from dash import html

from dashboard.components.alerts import empty_store, guarded
from dashboard.lib import store


def run_page(render):
    """Turn render(view, **query) into a Dash pages layout(run=None, **query)."""

    @functools.wraps(render)
    @guarded
    def layout(run=None, **query):
        cat = store.catalog()
        if store.runs_table().empty:
            return html.Div([empty_store(cat.root), *_broken(cat)])
        run_id = store.resolve_run_id(run)
        v = store.view(run_id)
        return render(v, **query)

    return layout


def _broken(cat):
    from dashboard.components.alerts import notice

    return [notice(msg, color="warning") for msg in cat.errors.values()]
