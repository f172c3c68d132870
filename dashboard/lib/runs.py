"""Runs as the catalog lists them: families (the runs of one plan entry across layers, read from each
run's `family` attribute), the layer above or below a run, the run picker's options and the Runs table."""

import numpy as np

from dashboard.lib import store
from dashboard.lib.urls import href
from store import StoreError


def family(v) -> dict[int, str]:
    """{layer: run_id} of the runs in the family of run view `v`, one per layer (the newest)."""
    t = store.runs_table()
    out = {}
    if t.empty:
        return out
    for _, r in t[t["family"] == v.run.family].iterrows():
        out.setdefault(int(r["layer"]), r["run_id"])
    return out


def neighbour_run(v, delta: int):
    """The RunView one layer above (delta=+1) or below (-1) in the same family, or None."""
    run_id = family(v).get(v.layer + delta)
    if run_id is None:
        return None
    try:
        return store.view(run_id)
    except StoreError:
        return None


def family_names(table) -> dict[str, str]:
    """{family: display name}: the plan entry's name (else the model), with the model when they differ;
    families that would share a name get their id added."""
    if table.empty:
        return {}
    first = table.drop_duplicates("family")
    names = {
        r["family"]: (r["name"] if r["name"] == r["model"] else f"{r['name']} ({r['model']})")
        for _, r in first.iterrows()
    }
    taken = list(names.values())
    return {f: (n if taken.count(n) == 1 else f"{n} [{f}]") for f, n in names.items()}


def run_options() -> list[dict]:
    """Dropdown options for the run picker: the runs of a family together, in layer order."""
    t = store.runs_table()
    if t.empty:
        return []
    names = family_names(t)
    out = []
    for _, r in t.sort_values(
        ["name", "family", "layer", "created"], ascending=[True, True, True, False], kind="stable"
    ).iterrows():
        sae = f" · SAE {r['sae_arch']} {int(r['sae_d_sae'])}" if _present(r.get("sae_d_sae")) else ""
        out.append(
            {
                "label": f"{names[r['family']]} · L{int(r['layer'])} · {int(r['n_words']):,} words{sae}",
                "value": r["run_id"],
            }
        )
    return out


def with_log_ipc(table):
    """The catalog table with `i_pc_log10` filled from `i_pc` for runs stored before it existed (NaN where
    I_PC underflowed to 0, as it does in transformer layers)."""
    if table.empty or "i_pc" not in table:
        return table
    out = table.copy()
    pc = out["i_pc"].astype(float)
    fallback = np.log10(pc.where(pc > 0))
    out["i_pc_log10"] = out["i_pc_log10"].astype(float).fillna(fallback) if "i_pc_log10" in out else fallback
    return out


def records(table, columns) -> list[dict]:
    """Rows of the Runs table: the run id as a markdown link, then `columns` of the catalog table, with
    the family shown by its name and numbers made JSON-safe (NaN -> None, 4 decimals)."""
    names = family_names(table)
    out = []
    for _, r in table.iterrows():
        row = {"id": r["run_id"], "run": f"[{r['run_id']}]({href('/words', run=r['run_id'])})"}
        for key in columns:
            v = names.get(r["family"]) if key == "family" else r.get(key)
            if isinstance(v, (float, np.floating)):
                v = None if not np.isfinite(v) else round(float(v), 4)
            elif isinstance(v, np.integer):
                v = int(v)
            row[key] = v
        out.append(row)
    return out


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))
