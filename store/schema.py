"""The run-file schema as code: every HDF5 dataset path, every group that carries attributes and every
root attribute is named here once. Writers (compute/) and readers (store/, dashboard/) use these names;
docs/store.md documents each one, and tests/test_store.py keeps the two in step.

A group object's `path` is the group itself (its attributes live there); each other field is the full
path of a child: `SAE.density == "sae/density"`, `SAE.history.step == "sae/history/step"`."""

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from store.settings import settings

SCHEMA_VERSION = 1
RUN_SUFFIX = ".h5"
TMP_PREFIX = ".tmp-"
COMPARISON_SEP = "__"


class StoreError(Exception):
    """A run file that cannot be read: corrupt, truncated, or of an unknown schema."""


def default_root(root=None) -> Path:
    """The store root: the argument, else $LEXISCOPE_STORE, else ./lexiscope-store."""
    return Path(root) if root else settings().store


def runs_dir(root=None) -> Path:
    return default_root(root) / "runs"


def run_path(root, run_id: str) -> Path:
    return runs_dir(root) / f"{run_id}{RUN_SUFFIX}"


def comparisons_dir(root=None) -> Path:
    return default_root(root) / "comparisons"


def comparison_path(root, run_a: str, run_b: str) -> Path:
    """`<store>/comparisons/<run_a>__<run_b>.h5`: runs a and b compared (compute/comparison.py). Run ids hold no
    `__` (run_id_for makes them of letters, digits and single dashes); callers pass ids the catalog knows."""
    return comparisons_dir(root) / f"{run_a}{COMPARISON_SEP}{run_b}{RUN_SUFFIX}"


def corpus_path(root, corpus_hash: str) -> Path:
    """`<store>/corpora/<hash>.h5`: the sentences of one corpus, shared by every run that read it."""
    return default_root(root) / "corpora" / f"{corpus_hash}{RUN_SUFFIX}"


# -- root attributes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootAttrs:
    """Attributes of the root group `/`: the identity of a run, written last (a file without them is
    not a run). `family` is shared by the runs of one plan entry across layers; files written before
    it existed lack it (readers then derive it with `family_of`)."""

    schema_version: str = "schema_version"
    run_id: str = "run_id"
    model: str = "model"
    layer: str = "layer"
    n_layers: str = "n_layers"
    source: str = "source"
    config: str = "config"
    config_hash: str = "config_hash"
    family: str = "family"
    created: str = "created"
    lexiscope_version: str = "lexiscope_version"


ROOT = RootAttrs()
ROOT_ATTRS = tuple(getattr(ROOT, f.name) for f in fields(RootAttrs))

# Config keys that differ between the layers of one plan entry without changing what is computed.
_NOT_FAMILY = ("layers", "layer", "name", "batch_size")


def family_of(model: str, config: dict | None) -> str:
    """The family id of a run: `<model>-<8 hex>`, a hash of its config without the keys that differ
    between the layers of one plan entry (or do not change results: name, batch size)."""
    body = {k: v for k, v in (config or {}).items() if k not in _NOT_FAMILY}
    digest = hashlib.sha256(json.dumps([model, body], sort_keys=True, default=str).encode()).hexdigest()
    return f"{str(model).rsplit('/', 1)[-1]}-{digest[:8]}"


# -- groups and datasets --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """Base of the group classes: every field after `path` names a child (its default, else the field
    name) and is replaced by the child's full path; a field whose default is a group class becomes
    that group at `<path>/<field name>`."""

    path: str
    ATTRS: ClassVar[bool] = False  # whether the group itself carries attributes

    def __post_init__(self):
        for f in fields(self)[1:]:
            child = getattr(self, f.name)
            if isinstance(child, type):
                value = child(f"{self.path}/{f.name}")
            else:
                value = f"{self.path}/{child or f.name}"
            object.__setattr__(self, f.name, value)

    def datasets(self) -> dict[str, str]:
        """{field name: full path} of the datasets directly in this group."""
        return {f.name: getattr(self, f.name) for f in fields(self)[1:] if isinstance(getattr(self, f.name), str)}

    def paths(self) -> list[str]:
        """This group (if it carries attributes), its datasets and those of its child groups."""
        out = [self.path] if self.ATTRS else []
        for f in fields(self)[1:]:
            child = getattr(self, f.name)
            out += child.paths() if isinstance(child, _Group) else [child]
        return out


@dataclass(frozen=True)
class Words(_Group):
    text: str = ""
    lang: str = ""
    zipf: str = ""
    group: str = ""
    n_contexts: str = ""


@dataclass(frozen=True)
class ConceptGroups(_Group):
    names: str = ""


@dataclass(frozen=True)
class Neighbors(_Group):
    indices: str = ""
    cos: str = ""


@dataclass(frozen=True)
class AlignedProjections(_Group):
    """The word maps of all layers of a contextual run fitted jointly (compute/layer_stack.py)."""

    umap3d: str = ""
    umap2d: str = ""


@dataclass(frozen=True)
class Projections(_Group):
    umap3d: str = ""
    umap2d: str = ""
    pca2: str = ""
    aligned: AlignedProjections = AlignedProjections


@dataclass(frozen=True)
class Geometry(_Group):
    ATTRS: ClassVar[bool] = True
    mean: str = ""
    cos_contrib: str = ""
    outlier_dims: str = ""
    pca2: str = ""
    pca2_explained: str = ""


@dataclass(frozen=True)
class Enhanced(_Group):
    ATTRS: ClassVar[bool] = True
    centroids: str = ""
    means: str = ""
    directions: str = ""
    cluster: str = ""
    neighbors: Neighbors = Neighbors


@dataclass(frozen=True)
class PerLanguage(_Group):
    """A group with attributes and one attribute-only subgroup per language (`<path>/<lang>`)."""

    ATTRS: ClassVar[bool] = True

    def of(self, lang: str) -> str:
        return f"{self.path}/{lang}"

    def paths(self) -> list[str]:
        return super().paths() + [self.of("<lang>")]


@dataclass(frozen=True)
class Similarity(_Group):
    ATTRS: ClassVar[bool] = True


@dataclass(frozen=True)
class Tokens(_Group):
    text: str = ""
    positions: str = ""


@dataclass(frozen=True)
class STSGroup(PerLanguage):
    scores: str = ""


@dataclass(frozen=True)
class CSR(_Group):
    """A sparse matrix: {indptr (n+1,) int64, indices (nnz,) int32, data (nnz,) float32}, attribute `shape`."""

    ATTRS: ClassVar[bool] = True
    indptr: str = ""
    indices: str = ""
    data: str = ""


@dataclass(frozen=True)
class SAEHistory(_Group):
    step: str = ""
    loss: str = ""
    mse: str = ""
    l0: str = ""
    fvu: str = ""
    dead: str = ""


@dataclass(frozen=True)
class SAEGroup(_Group):
    ATTRS: ClassVar[bool] = True
    W_enc: str = ""
    b_enc: str = ""
    W_dec: str = ""
    b_dec: str = ""
    norm_mean: str = ""
    norm_scale: str = ""
    threshold: str = ""  # batch_topk only
    acts: CSR = CSR
    density: str = ""
    max_act: str = ""
    concept_precision: str = ""
    concept_recall: str = ""
    concept_f1: str = ""
    mono_score: str = ""  # the concept score: each feature's best F1 over the labels
    best_label: str = ""
    feature_label: str = ""
    top_words: str = ""
    top_acts: str = ""
    quantile_words: str = ""
    quantile_acts: str = ""
    decoder_neighbors: str = ""
    decoder_neighbor_cos: str = ""
    correlated: str = ""
    correlated_cos: str = ""
    feature_map: str = ""
    feature_intrusion: str = ""
    history: SAEHistory = SAEHistory
    next_layer_match: str = ""
    next_layer_cos: str = ""
    prev_layer_match: str = ""
    prev_layer_cos: str = ""


@dataclass(frozen=True)
class CorpusFile(_Group):
    """The datasets of a corpus file (`corpus_path`); root attributes `sources` (JSON list), `n_sentences`."""

    sentences: str = ""


@dataclass(frozen=True)
class Contexts(_Group):
    """Token-level activations of a contextual run's SAE over its whole corpus (compute/contexts.py)."""

    ATTRS: ClassVar[bool] = True
    token_density: str = ""
    top_sentence: str = ""
    top_token: str = ""
    top_span: str = ""
    top_act: str = ""
    quantile_sentence: str = ""
    quantile_token: str = ""
    quantile_span: str = ""
    quantile_act: str = ""
    word_ptr: str = ""
    word_sentence: str = ""
    word_span: str = ""
    word_features: str = ""
    word_acts: str = ""


@dataclass(frozen=True)
class LabelsGroup(_Group):
    """Concept labels of the words (compute/labels.py): WordNet supersenses, then the concept groups."""

    ATTRS: ClassVar[bool] = True
    names: str = ""
    member: CSR = CSR
    weights: CSR = CSR


# -- across layers (issue 14; compute/layer_stack.py, docs/layers.md) ------------------------------------


@dataclass(frozen=True)
class LayerMatches(_Group):
    """Each feature of this layer matched to the features of one neighbouring layer (compute.lineage.Matches)."""

    cos_idx: str = ""
    cos: str = ""
    cos_idx_corr: str = ""
    corr_idx: str = ""
    corr: str = ""


@dataclass(frozen=True)
class LineageGroup(_Group):
    """The run's SAE features traced through the layers computed with it."""

    ATTRS: ClassVar[bool] = True
    layers: str = ""
    up: LayerMatches = LayerMatches
    down: LayerMatches = LayerMatches
    chain: str = ""
    born: str = ""
    ending: str = ""
    thresholds: str = ""
    carried_up: str = ""
    carried_from_below: str = ""
    null_max_cos: str = ""
    null_matched: str = ""
    feature_map: str = ""


@dataclass(frozen=True)
class WordShift(_Group):
    """How each word changes from the layer below to this one."""

    ATTRS: ClassVar[bool] = True
    neighbour_jaccard: str = ""
    shift_aligned: str = ""
    shift_independent: str = ""


EMBEDDINGS = "embeddings"
WORDS = Words("words")
GROUPS = ConceptGroups("groups")
LABELS = LabelsGroup("labels")
NEIGHBORS = Neighbors("neighbors")
PROJECTIONS = Projections("projections")
GEOMETRY = Geometry("geometry")
GEOMETRY_TOKENS = Geometry("geometry_tokens")  # the same measures on the token sample (contextual runs)
ENHANCED = Enhanced("enhanced")
LANGUAGES = PerLanguage("languages")
SIMILARITY = Similarity("similarity")
TOKENS = Tokens("tokens")
STS = STSGroup("sts")
SAE = SAEGroup("sae")
CONTEXTS = Contexts("contexts")
LINEAGE = LineageGroup("lineage")
WORD_SHIFT = WordShift("word_shift")
CORPUS = CorpusFile("")  # paths inside a corpus file, not a run file

# -- comparison files (not run files): two runs compared on their shared words ---------------------


@dataclass(frozen=True)
class ComparisonAttrs:
    """Root attributes of a comparison file, written last (a file without them is not a comparison)."""

    schema_version: str = "schema_version"
    run_a: str = "run_a"
    run_b: str = "run_b"
    created_a: str = "created_a"  # the runs' `created` stamps: a recomputed run makes the comparison stale
    created_b: str = "created_b"
    n_shared: str = "n_shared"
    k: str = "k"
    seed: str = "seed"
    cka: str = "cka"
    cka_shuffled: str = "cka_shuffled"
    jaccard_mean: str = "jaccard_mean"
    jaccard_random: str = "jaccard_random"
    feature_r_median: str = "feature_r_median"  # a's features against b; _ba: b's against a
    feature_r_shuffled: str = "feature_r_shuffled"
    feature_r_median_ba: str = "feature_r_median_ba"
    feature_r_shuffled_ba: str = "feature_r_shuffled_ba"
    created: str = "created"
    lexiscope_version: str = "lexiscope_version"


@dataclass(frozen=True)
class ComparisonLabels(_Group):
    names: str = ""
    n: str = ""
    cka: str = ""
    shuffled: str = ""


@dataclass(frozen=True)
class ComparisonFeatures(_Group):
    a_to_b: str = ""
    a_to_b_r: str = ""
    b_to_a: str = ""
    b_to_a_r: str = ""


@dataclass(frozen=True)
class ComparisonFile(_Group):
    """The datasets of a comparison file (`comparison_path`); docs/store.md "Comparisons"."""

    words: str = ""
    rows_a: str = ""
    rows_b: str = ""
    jaccard: str = ""
    most_agree: str = ""
    least_agree: str = ""
    neighbours_a: str = ""
    neighbours_b: str = ""
    labels: ComparisonLabels = ComparisonLabels
    features: ComparisonFeatures = ComparisonFeatures


COMPARISON_ROOT = ComparisonAttrs()
COMPARISON_ROOT_ATTRS = tuple(getattr(COMPARISON_ROOT, f.name) for f in fields(ComparisonAttrs))
COMPARISON = ComparisonFile("")  # paths inside a comparison file, not a run file

GROUPS_IN_FILE = (
    WORDS,
    GROUPS,
    LABELS,
    NEIGHBORS,
    PROJECTIONS,
    GEOMETRY,
    GEOMETRY_TOKENS,
    ENHANCED,
    LANGUAGES,
    SIMILARITY,
    TOKENS,
    STS,
    SAE,
    CONTEXTS,
    LINEAGE,
    WORD_SHIFT,
)


def all_paths() -> list[str]:
    """Every path the schema names: "/" (root attributes), datasets, and groups that carry attributes
    (`<lang>` stands for a language code). docs/store.md documents exactly these."""
    out = ["/", EMBEDDINGS]
    for group in GROUPS_IN_FILE:
        out += group.paths()
    return out
