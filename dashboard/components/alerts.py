"""Contained failures: a page that cannot read its run shows an alert; other pages keep working."""

import functools
import logging
import traceback

import dash_bootstrap_components as dbc
from dash import dcc, html

from store import StoreError

log = logging.getLogger("lexiscope.dashboard")


def error_alert(message: str, title: str = "This view cannot be shown"):
    return dbc.Alert(
        [
            html.H5(title, className="alert-heading"),
            html.P(message, className="mb-1"),
            html.Small(["Other runs and pages still work: ", dcc.Link("back to the runs", href="/")]),
        ],
        color="danger",
        className="lx-error mt-3",
        id="lx-error",
    )


def notice(message, color="info", **kw):
    return dbc.Alert(message, color=color, className=kw.pop("className", "mt-2"), **kw)


def empty_store(root) -> html.Div:
    """The friendly page of an empty store: how to fill it."""
    return dbc.Card(
        dbc.CardBody(
            [
                html.H4("No runs in this store yet", className="card-title"),
                html.P(["The dashboard reads precomputed runs from ", html.Code(str(root)), ". Compute some first:"]),
                html.Pre(
                    f"lexiscope precompute --store {root}            # the bundled default plan\n"
                    f"lexiscope precompute my_plan.yaml --store {root}\n"
                    f"lexiscope demo                                   # precompute, then serve",
                    className="lx-code",
                ),
                html.P(
                    [
                        "A plan is a YAML list of runs (model, vocabulary, geometry, SAE, projections); "
                        "see compute/data/default_plan.yaml. This page notices new runs without a restart — "
                        "reload it when precompute finishes."
                    ],
                    className="mb-0",
                ),
            ]
        ),
        className="mt-4",
        id="lx-empty-store",
    )


def describe(e: Exception) -> str:
    if isinstance(e, (StoreError, KeyError)):
        return str(e).strip("'\"")
    return f"{type(e).__name__}: {e}"


def guarded(fn):
    """Wrap a page layout: any failure reading the run becomes an alert instead of a broken page."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (StoreError, KeyError, OSError, ValueError, IndexError) as e:
            log.warning("view failed: %s", describe(e))
            return error_alert(describe(e))
        except Exception as e:  # a bug must not take the app down either; log it in full
            log.error("view crashed: %s", traceback.format_exc())
            return error_alert(describe(e), title="Unexpected error")

    return wrapper
