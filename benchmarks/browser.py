"""Benchmark: the word map in headless Chromium, today's code beside the code before the word-map rework.

For each store, run and map (3-D: at most 20k points; 2-D: at most 200k), both versions of the dashboard
serve the same store, each in its own process, and one Chromium (/usr/bin/chromium + chromedriver,
software WebGL) opens /words?run=..&proj=..&word=.. on each and clicks map points one after the other:

- click -> panel: from the click (plotly's own click event, emitted on the graph as a mouse click emits it)
  until the word panel showing the clicked word is painted; click -> map: until the map showing it as the
  selected word is painted. Both timed in the page (performance.now(); a MutationObserver or an
  animation-frame poll sees the change, and the time is taken after the next frame).
- bytes per click: every network response (encoded length, headers included) and request body, from
  Chrome's DevTools network events (performance log) between the click and a quiet network.

The clicked words are the same for both versions: every k-th word of the base sample both draw.

Stores: the default plan's (`lexiscope precompute`, built into the bench work dir if missing: ~25 min on
2 cores) and the end-to-end benchmark's 400k-word GloVe run when it is there. The baseline is a git worktree
of BEFORE_REF in the bench work dir."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import chromium as common_chromium
from benchmarks.common import row, work_dir

BEFORE_REF = "7617235"  # main before issue 15 (the Words page rebuilt on every click)
REPO = Path(__file__).resolve().parents[1]
TARGET_MS, TARGET_KB = 1000.0, 50.0
CLICK_TIMEOUT_S = 120
SERVE = """
import logging, sys
from dashboard.lib import store
store.configure(sys.argv[1], max_points=int(sys.argv[3]) or None)
from dashboard.app import app
logging.getLogger("werkzeug").setLevel(logging.ERROR)
app.run(host="127.0.0.1", port=int(sys.argv[2]), debug=False)
"""

INSTALL_JS = """
window.__lx = {t0: 0, target: null, panel: null, map: null};
const mapOf = () => {
    const el = document.querySelector('[id*="words-map"] .js-plotly-plot');
    return el && el._fullData ? el : null;
};
window.__lxMapShows = (word) => {
    const gd = mapOf();
    if (!gd) return false;
    return gd._fullData.some(t => t.name === 'selected' && t.text && t.text[0] === word);
};
// a time is taken after the next frame is painted (an animation frame, then a task), not at the DOM change
const painted = (key, t0) => requestAnimationFrame(() => setTimeout(() => {
    if (window.__lx.t0 === t0) window.__lx[key] = performance.now() - t0;
}, 0));
new MutationObserver(() => {
    const L = window.__lx, el = document.getElementById('words-selected');
    if (L.target && L.panel === null && !L.panelSeen && el && el.textContent === L.target) {
        L.panelSeen = true;
        painted('panel', L.t0);
    }
}).observe(document.body, {subtree: true, childList: true, characterData: true});
window.__lxPoll = () => {
    const L = window.__lx;
    if (!L.target || L.map !== null || L.mapSeen) return;
    if (window.__lxMapShows(L.target)) { L.mapSeen = true; painted('map', L.t0); } else { requestAnimationFrame(window.__lxPoll); }
};
return true;
"""

CLICK_JS = """
const target = arguments[0];
const gd = document.querySelector('[id*="words-map"] .js-plotly-plot');
let c = -1, i = -1;
for (let k = 0; k < gd.data.length && i < 0; k++) {
    if (gd.data[k].name === 'selected' || !gd.data[k].text) continue;
    i = Array.prototype.indexOf.call(gd.data[k].text, target);
    if (i >= 0) c = k;
}
if (i < 0) return false;
const L = window.__lx;
L.target = target; L.panel = null; L.map = null; L.panelSeen = false; L.mapSeen = false; L.t0 = performance.now();
const cd = gd.data[c].customdata;
gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: i, text: target,
                                   customdata: cd ? cd[i] : undefined}]});
requestAnimationFrame(window.__lxPoll);
return true;
"""

READY_JS = """
const el = document.getElementById('words-selected');
const gd = document.querySelector('[id*="words-map"] .js-plotly-plot');
return !!(el && el.textContent === arguments[0] && gd && gd._fullLayout && gd.querySelector('.main-svg')
          && !document.querySelector('[data-dash-is-loading="true"]'));
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def before_tree(ref: str = BEFORE_REF) -> Path:
    """A detached git worktree of `ref` in the bench work dir (made once)."""
    path = work_dir() / f"before-{ref}"
    if not (path / "dashboard" / "app.py").is_file():
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=False, capture_output=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--force", str(path), ref],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return path


def default_store(quick: bool) -> Path:
    """The default plan's store (quick: one 2,000-word GloVe run), precomputed here if missing."""
    root = work_dir() / ("browser-quick-store" if quick else "default-plan-store")
    if not _has_runs(root):
        from compute.config import load_plan, parse_plan
        from compute.pipeline import precompute

        if quick:
            plan = parse_plan(
                {
                    "runs": [
                        {
                            "name": "glove-2k",
                            "model": "glove-6b-50d",
                            "vocabulary": {"top_n": 2000, "concept_groups": "default"},
                            "projections": {"umap_epochs": 50},
                            "sae": {"arch": "topk", "d_sae": 128, "k": 8, "steps": 100},
                        }
                    ]
                }
            )
        else:
            plan = load_plan(None)
        precompute(plan, store=root, device="cpu")
    return root


def big_store() -> Path | None:
    """The end-to-end benchmark's 400k-word store, if it was built."""
    from benchmarks.end_to_end import FULL_SIZES, store_dir

    root = store_dir(max(FULL_SIZES), False)
    return root if _has_runs(root) else None


def _has_runs(root: Path) -> bool:
    return any(not p.name.startswith(".") for p in (root / "runs").glob("*.h5"))


class Server:
    """One version of the dashboard over a store, in its own process."""

    def __init__(self, tree: Path, store: Path, max_points: int = 0):
        self.port = _free_port()
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(store), str(self.port), str(max_points)],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/", timeout=5).read()
                return
            except OSError:
                time.sleep(0.5)
        self.close()
        raise RuntimeError(f"dashboard at {tree} did not start")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def chromium():
    driver = common_chromium(timeout_s=300, performance_log=True)
    driver.set_page_load_timeout(300)
    driver.set_script_timeout(300)
    return driver


def _wait(driver, js, *args, timeout=CLICK_TIMEOUT_S, every=0.02):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = driver.execute_script(js, *args)
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(js.strip().splitlines()[0][:80])


def network_bytes(driver) -> dict:
    """Bytes of the network events in the performance log since it was last read."""
    down, up, requests = 0, 0, 0
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.loadingFinished":
            down += int(msg["params"].get("encodedDataLength") or 0)
        elif msg["method"] == "Network.requestWillBeSent":
            requests += 1
            up += len((msg["params"]["request"].get("postData") or "").encode())
    return dict(down=down, up=up, requests=requests)


def _quiet(driver, settle_s=0.4, timeout_s=30):
    """Wait until no request is pending (Dash's pending-callback marker gone) and a short settle."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and driver.execute_script(
        "return !!document.querySelector('[data-dash-is-loading=\"true\"]')"
    ):
        time.sleep(0.05)
    time.sleep(settle_s)


def measure(driver, url: str, first: str, targets: list[str]) -> dict:
    """Open the page, then click each target in turn: click->panel, click->map and bytes per click."""
    t0 = time.perf_counter()
    driver.get(url)
    _wait(driver, READY_JS, first, timeout=300, every=0.1)
    load_s = time.perf_counter() - t0
    _quiet(driver, 1.0)
    load_bytes = network_bytes(driver)
    driver.execute_script(INSTALL_JS)
    clicks = []
    for word in targets:
        _quiet(driver)
        network_bytes(driver)  # drain
        if not driver.execute_script(CLICK_JS, word):
            clicks.append(dict(word=word, error="not drawn"))
            continue
        try:
            _wait(driver, "return window.__lx.panel !== null && window.__lx.map !== null")
        except TimeoutError:
            clicks.append(dict(word=word, error=f"no panel/map within {CLICK_TIMEOUT_S} s"))
            break
        lx = driver.execute_script("return window.__lx")
        _quiet(driver)
        clicks.append(
            dict(word=word, panel_ms=round(lx["panel"], 1), map_ms=round(lx["map"], 1), **network_bytes(driver))
        )
    ok = [c for c in clicks[1:] if "error" not in c]  # the first click warms up
    panel = [c["panel_ms"] for c in ok]
    kb = [(c["down"] + c["up"]) / 1024 for c in ok]
    return dict(
        url=url,
        first_render_s=round(load_s, 2),
        first_render_kb=round((load_bytes["down"] + load_bytes["up"]) / 1024, 1),
        clicks=clicks,
        n=len(ok),
        panel_p50_ms=_pct(panel, 50),
        panel_p95_ms=_pct(panel, 95),
        map_p50_ms=_pct([c["map_ms"] for c in ok], 50),
        map_p95_ms=_pct([c["map_ms"] for c in ok], 95),
        kb_per_click_median=round(statistics.median(kb), 1) if kb else None,
        kb_per_click_max=round(max(kb), 1) if kb else None,
        requests_per_click=statistics.median([c["requests"] for c in ok]) if ok else None,
        errors=[c for c in clicks if "error" in c],
    )


def _pct(values, q):
    return round(float(np.percentile(values, q)), 1) if values else None


def cases(quick: bool) -> list[dict]:
    """(store, run, projection, drawn points) to measure."""
    from dashboard.lib import store as dstore

    out = []
    stores = [("default plan", default_store(quick))]
    big = None if quick else big_store()
    if big is not None:
        stores.append(("400k GloVe", big))
    for label, root in stores:
        dstore.configure(root)
        table = dstore.runs_table().sort_values("created")
        runs = table[table["layer"] == table.groupby("family")["layer"].transform("max")]  # top layer per family
        for _, r in runs.iterrows():
            for proj, limit in (("umap3d", 20_000), ("umap2d", 200_000)):
                if proj == "umap2d" and label == "default plan" and r["dim"] > 100:
                    continue  # one 2-D map per store is enough (the MiniLM 2-D map has the same size)
                out.append(
                    dict(store=label, root=root, run=r["run_id"], n_words=int(r["n_words"]), proj=proj, limit=limit)
                )
    dstore.configure(None)
    return out


def targets(root: Path, run_id: str, limit: int, n: int, seed: int = 0) -> list[str]:
    """n + 1 words that both versions draw: from the first 90% of the base sample (every concept-group
    word, then the most frequent), seeded; the first is the start page's word."""
    from dashboard.lib import store as dstore

    dstore.configure(root)
    v = dstore.view(run_id)
    base = v.base_sample(min(limit, v.n))
    pool = base[: max(n + 1, int(0.9 * len(base)))]
    rows = np.random.default_rng(seed).choice(pool, n + 2, replace=False)
    words = []
    for r in rows:
        w = str(v.words[r])
        if v.find(w) == r and w not in words and "&" not in w and "#" not in w:
            words.append(w)
    dstore.configure(None)
    return words[: n + 1]


def run(quick: bool = False) -> dict:
    before = before_tree()
    n_after, n_before = (3, 2) if quick else (15, 6)
    results = []
    driver = chromium()
    try:
        for case in cases(quick):
            drawn = min(case["n_words"], case["limit"])
            words = targets(case["root"], case["run"], case["limit"], max(n_after, n_before))
            path = f"/words?run={case['run']}&proj={case['proj']}&word={words[0]}"
            entry = dict(store=case["store"], run=case["run"], n_words=case["n_words"], proj=case["proj"], drawn=drawn)
            # the baseline has one limit for both kinds of map: give it this map's
            for version, tree, n, max_points in (
                ("before", before, n_before, case["limit"]),
                ("after", REPO, n_after, 0),
            ):
                server = Server(tree, case["root"], max_points)
                try:
                    entry[version] = measure(driver, server.url + path, words[0], words[1 : n + 1])
                except Exception as e:  # one failing case must not lose the others
                    entry[version] = dict(error=f"{type(e).__name__}: {str(e)[:200]}")
                finally:
                    server.close()
                print(
                    f"[browser] {case['store']} {case['run']} {case['proj']} {version}: "
                    f"{ {k: entry[version].get(k) for k in ('panel_p50_ms', 'panel_p95_ms', 'kb_per_click_median')} }",
                    file=sys.stderr,
                    flush=True,
                )
            results.append(entry)
    finally:
        driver.quit()

    table = []
    for e in results:
        b, a = e.get("before", {}), e.get("after", {})
        name = f"{e['store']} {e['run']} {e['proj']} ({e['drawn']:,} points)"
        if a.get("panel_p95_ms") is not None:
            table.append(
                row(
                    "browser",
                    f"{name}: click -> panel p50 / p95 ms",
                    f"{a['panel_p50_ms']:.0f} / {a['panel_p95_ms']:.0f}",
                    f"{b['panel_p50_ms']:.0f} / {b['panel_p95_ms']:.0f}" if b.get("panel_p95_ms") else None,
                    round(b["panel_p95_ms"] / a["panel_p95_ms"], 1) if b.get("panel_p95_ms") else None,
                    f"p95 <= {TARGET_MS:.0f} ms",
                    a["panel_p95_ms"] <= TARGET_MS,
                )
            )
            table.append(
                row(
                    "browser",
                    f"{name}: KB per click (median)",
                    a["kb_per_click_median"],
                    b.get("kb_per_click_median"),
                    None,
                    f"<= {TARGET_KB:.0f} KB",
                    a["kb_per_click_max"] <= TARGET_KB,
                    unit="KB",
                )
            )
    return dict(
        params=dict(before_ref=BEFORE_REF, clicks_after=n_after, clicks_before=n_before, cases=len(results)),
        figures=dict(cases=results),
        table=table,
        notes=[
            "headless Chromium with software WebGL (SwiftShader) on the same shared 2-core machine as the servers",
            "before = git worktree of BEFORE_REF, served with max_points set to the map's limit (it has one "
            "limit for 3-D and 2-D maps); after = this tree with its defaults (3-D 20k, 2-D 200k)",
            "the first click of each series warms up and is left out; KB = responses (encoded, with headers) "
            "plus request bodies, from Chrome's network events",
        ],
    )
