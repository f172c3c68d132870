"""The Words page's view state, read from its URL query: which projection, colouring, word, search and
toggles. `MapState.of(query)` parses what the user asked for; `resolve` fills in what follows from the
run (the projection it has, the word's row, the feature or dimension to colour by)."""

from dataclasses import asdict, dataclass, replace

import numpy as np

from dashboard.lib.urls import as_int

PROJECTIONS = {"umap3d": "UMAP 3D", "umap2d": "UMAP 2D", "pca2": "PCA"}
COLORS = {
    "group": "concept group",
    "cluster": "cluster",
    "zipf": "Zipf frequency",
    "feature": "feature activation",
    "dim": "dimension value",
}
OFF, ON = "0", "1"


@dataclass(frozen=True)
class MapState:
    run: str | None = None
    proj: str = "umap3d"
    color: str = "group"
    feature: int | None = None
    dim: int | None = None
    word: str | None = None
    q: str | None = None  # search: every word matching it (a prefix, or /regex/) lights up
    labels: bool = True  # group or cluster names at their centroids
    density: bool = False  # density contours (2-D maps)
    row: int | None = None  # resolved: the word's row, None if not in the vocabulary

    @classmethod
    def of(cls, query: dict, run: str | None = None) -> "MapState":
        word = (query.get("word") or "").strip() or None
        q = (query.get("q") or "").strip() or None
        return cls(
            run=run,
            proj=query.get("proj") or "umap3d",
            color=query.get("color") if query.get("color") in COLORS else "group",
            feature=as_int(query.get("feature")),
            dim=as_int(query.get("dim")),
            word=word,
            q=q,
            labels=query.get("labels") != OFF,
            density=query.get("density") == ON,
        )

    def resolve(self, v) -> "MapState":
        """The state as drawn for run view `v`: a projection the run has, the word's row, and the feature
        (the word's strongest) or dimension (its largest) when colouring by one without naming it."""
        available = v.projections()
        proj = self.proj if self.proj in available else (available[0] if available else None)
        row = v.find(self.word) if self.word else None
        feature, dim, color = self.feature, self.dim, self.color
        if color == "feature" and not v.has_sae:
            color = "group"
        if color == "cluster" and v.clusters is None:
            color = "group"
        if color == "feature" and feature is None and row is not None:
            top, _ = v.word_features(row, limit=1)
            feature = int(top[0]) if len(top) else None
        if color == "feature" and feature is not None and not 0 <= feature < v.n_features:
            feature = None
        if color == "dim" and dim is None and row is not None:
            dim = int(np.argmax(np.abs(v.embeddings[row])))
        if color == "dim" and dim is not None and not 0 <= dim < v.d:
            dim = None
        return replace(self, run=v.run_id, proj=proj, color=color, feature=feature, dim=dim, row=row)

    @property
    def three_d(self) -> bool:
        return self.proj == "umap3d"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "MapState | None":
        return cls(**d) if d else None
