"""Runs (home): the catalog as a sortable table, and each measure across layers per run family."""

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, callback, ctx, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard.components.alerts import empty_store, guarded, notice
from dashboard.components.widgets import card, graph
from dashboard.lib import store
from dashboard.lib.runs import family_names, records, with_log_ipc
from dashboard.lib.urls import href

dash.register_page(__name__, path="/", name="Runs", title="Lexiscope · runs", order=0)

COLUMNS = [
    ("family", "family"),
    ("model", "model"),
    ("layer", "layer"),
    ("n_words", "words"),
    ("dim", "d"),
    ("sae_arch", "SAE"),
    ("sae_d_sae", "SAE width"),
    ("sae_fvu", "FVU"),
    ("sae_l0", "L0"),
    ("i_cos", "i_cos"),
    ("i_pc_log10", "log10 i_pc"),
    ("isoscore", "IsoScore"),
    ("sae_intrusion", "intrusion"),
    ("sae_qvec", "QVEC"),
    ("created", "created"),
]
# One line per measure, shown as the column's tooltip and beside its chart (docs/dashboard.md repeats them).
DEFINITIONS = {
    "i_cos": "i_cos: the mean cosine between two different words' vectors. 0 for directions spread evenly "
    "(isotropic); near 1 when all vectors point one way.",
    "i_pc_log10": "log10 i_pc: i_pc is min / max over the principal directions u of F(u) = Σ exp(u·w); 0 (i_pc "
    "= 1) is isotropic, very negative when one direction dominates.",
    "isoscore": "IsoScore (Rudman et al. 2022): how evenly the variance spreads over the dimensions. 1 = all "
    "dimensions used equally; 0 = a single one.",
    "sae_fvu": "FVU: the share of the vectors' variance the SAE does not reconstruct. 0 = perfect; 1 = no "
    "better than the mean vector.",
    "sae_l0": "L0: how many SAE features are active on a word, on average (lower = sparser).",
    "sae_intrusion": "intrusion (DistRatio): how far an intruder word lies from a feature's top words, relative "
    "to their spread. Higher = more interpretable; compare with the raw dimensions' score on the Features page.",
    "sae_qvec": "QVEC (Tsvetkov et al. 2015): how well each SAE feature correlates with its best WordNet "
    "supersense. Higher = features line up with supersenses; the Features page shows the raw dimensions' score.",
}

MEASURES = [
    ("i_cos", "i_cos (mean cosine)"),
    ("i_pc_log10", "log10 i_pc (i_pc underflows to 0 in transformer layers)"),
    ("isoscore", "IsoScore"),
    ("sae_fvu", "SAE FVU"),
    ("sae_l0", "SAE L0"),
    ("sae_intrusion", "SAE intrusion score"),
]


@guarded
def layout(run=None, **_):
    cat = store.catalog()
    table = with_log_ipc(store.runs_table())
    broken = [
        notice(f"Skipped an unreadable run: {msg}", color="warning", className="mt-2 mb-1 py-2")
        for msg in cat.errors.values()
    ]
    if table.empty:
        return html.Div([*broken, empty_store(cat.root)])
    numeric = {
        "layer",
        "n_words",
        "dim",
        "sae_d_sae",
        "sae_fvu",
        "sae_l0",
        "i_cos",
        "i_pc_log10",
        "isoscore",
        "sae_intrusion",
        "sae_qvec",
    }
    columns = [{"id": "run", "name": "run", "presentation": "markdown"}] + [
        {"id": k, "name": name, "type": "numeric" if k in numeric else "text"} for k, name in COLUMNS
    ]
    selected = [{"if": {"filter_query": f'{{id}} = "{run}"'}, "backgroundColor": "#e7f1ff"}] if run else []
    grid = dash_table.DataTable(
        id="runs-table",
        data=records(table, [k for k, _ in COLUMNS]),
        columns=columns,
        sort_action="native",
        filter_action="native",
        page_size=15,
        style_table={"overflowX": "auto"},
        markdown_options={"link_target": "_self"},
        style_cell={"fontSize": "0.85rem", "padding": "4px 8px", "fontFamily": "inherit", "cursor": "pointer"},
        style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
        style_data_conditional=selected,
        tooltip_header=DEFINITIONS,
        tooltip_delay=200,
        tooltip_duration=None,
        persistence=True,
        persisted_props=["sort_by", "filter_query"],
    )
    names = family_names(table)
    charts = [
        dbc.Col(
            [
                graph(
                    {"type": "runs-layer-chart", "measure": key},
                    figures.measure_across_layers(table, key, label, by="family", names=names),
                ),
                html.Div(DEFINITIONS.get(key, ""), className="lx-muted mb-2"),
            ],
            md=6,
            lg=4,
        )
        for key, label in MEASURES
        if key in table and table[key].notna().any()
    ]
    return html.Div(
        [
            dcc.Location(id="runs-nav", refresh="callback-nav"),
            *broken,
            orientation(),
            card(f"{len(table)} run(s) in {cat.root} — click a row to open its run", grid),
            card(
                "Measures across layers (one line per run family: the layers of one plan entry; click a point to "
                "open that run)",
                dbc.Row(charts),
            ),
        ]
    )


def orientation():
    """What Lexiscope is and where to start, for someone opening it for the first time."""
    return card(
        "Lexiscope: see inside word embeddings",
        html.P(
            [
                "Each run holds one model's word vectors (one layer), how isotropic they are, a sparse "
                "autoencoder (SAE) that splits them into features, and maps of the words. Start by opening a run "
                "(a row below): the ",
                html.B("Words"),
                " page shows its map; click a word to see its features and neighbours, draw a lasso on a 2-D map "
                "to see what a region shares. ",
                html.B("Features"),
                " explains one SAE feature, ",
                html.B("Concepts"),
                " ranks features for a group of words, ",
                html.B("Dimensions"),
                " and ",
                html.B("Geometry"),
                " show the raw dimensions and isotropy across layers, and ",
                html.B("Jobs"),
                " queues a new run. Hover a column title for what it measures.",
            ],
            className="mb-0",
            id="runs-orientation",
        ),
    )


@callback(
    Output("runs-nav", "href"),
    Input("runs-table", "active_cell"),
    Input({"type": "runs-layer-chart", "measure": ALL}, "clickData"),
    prevent_initial_call=True,
)
def open_run(cell, clicks):
    if ctx.triggered_id == "runs-table":
        if not cell or not cell.get("row_id"):
            raise PreventUpdate
        return href("/words", run=cell["row_id"])
    click = ctx.triggered[0]["value"] if ctx.triggered else None
    if not click or not click.get("points"):
        raise PreventUpdate
    return href("/words", run=click["points"][0]["customdata"])
