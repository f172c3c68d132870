"""The "Train another SAE on this run" shortcut: a link to the Jobs form, prefilled from the run."""

from dash import dcc

from dashboard.lib.urls import href


def train_another_href(run_id: str) -> str:
    return href("/jobs", from_run=run_id)


def train_another_sae(run_id: str, className: str = "lx-link lx-train-another small"):
    return dcc.Link(
        "Train another SAE on this run →", href=train_another_href(run_id), className=className, id="train-another-sae"
    )
