"""The app under gunicorn with two workers (forked after import): pages render through HTTP, each
worker opening the store lazily; and the app module opens no run file at import time."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers import synthetic_sae

from store import RunWriter

REPO = Path(__file__).resolve().parents[1]
ROUTE = ".._pages_content.children..._pages_store.data.."


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 300
    X = rng.standard_normal((n, 8)).astype(np.float32)
    group = np.full(n, -1, np.int16)
    group[:20] = 0
    out = {
        "words/text": [f"word{i}" for i in range(n)],
        "words/zipf": np.linspace(6, 2, n).astype(np.float32),
        "words/group": group,
        "groups/names": ["g"],
        "embeddings": X,
        "projections/umap3d": rng.standard_normal((n, 3)).astype(np.float32),
        "geometry/mean": X.mean(0),
        "geometry/cos_contrib": np.abs(X.mean(0)) / 10,
    }
    out.update(synthetic_sae(X, group, 1, d_sae=32, k=4))
    root = tmp_path_factory.mktemp("server-store")
    with RunWriter(root, "tiny", model="m", layer=0, n_layers=1, source="static", config={}, config_hash="t") as w:
        w.write_all(out)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _route(base, path, search):
    body = {
        "output": ROUTE,
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [
            {"id": "_pages_location", "property": "pathname", "value": path},
            {"id": "_pages_location", "property": "search", "value": search},
        ],
        "changedPropIds": ["_pages_location.search"],
        "state": [[]],  # ROUTING_STATE: the page markers on screen (none: a fresh page)
    }
    r = requests.post(f"{base}/_dash-update-component", json=body, timeout=60)
    r.raise_for_status()
    return r.text


def test_gunicorn_with_two_workers_serves_pages(tiny_store):
    pytest.importorskip("gunicorn")
    port = _free_port()
    env = {**os.environ, "LEXISCOPE_STORE": str(tiny_store)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "dashboard.app:server"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:  # workers import the app after the port opens: refused or slow answers at first
                if requests.get(f"{base}/_dash-layout", timeout=30).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "gunicorn did not come up"
            time.sleep(0.3)
        for i in range(8):  # enough requests to reach both workers
            text = _route(base, "/words", f"?run=tiny&word=word{i}")
            assert "lx-error" not in text
            assert json.loads(text)["response"]["_pages_content"]["children"] is not None
            assert f'"word{i}"' in text
        features = _route(base, "/features", "?run=tiny&feature=5")
        assert "Feature #5" in features
        assert "No runs in this store" not in _route(base, "/", "")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_importing_the_app_opens_no_run_file(tiny_store):
    """Fork safety: after `import dashboard.app` no HDF5 file is open in the process."""
    code = (
        "import h5py, dashboard.app; "
        "import gc; print(sum(1 for o in gc.get_objects() if isinstance(o, h5py.File) and o.id.valid))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LEXISCOPE_STORE": str(tiny_store)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "0"
