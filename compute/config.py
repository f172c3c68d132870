"""Typed, validated plans. A plan is a YAML file listing runs; see compute/data/default_plan.yaml."""

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from store.settings import settings

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_PLAN = DATA_DIR / "default_plan.yaml"
DEFAULT_GROUPS = DATA_DIR / "concept_groups.yaml"


class PlanError(ValueError):
    """A plan that cannot be used; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VocabularyConfig(_Strict):
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    top_n: int = Field(20000, ge=0, le=2_000_000, description="top N words per language by wordfreq")
    word_lists: list[str] = Field(default_factory=list, description="extra word-list files, one word a line")
    words: list[str] = Field(default_factory=list, description="extra words given inline")
    concept_groups: str | dict[str, list[str]] | None = Field(
        "default", description="'default', a YAML/TSV file, an inline {group: [words]} mapping, or null"
    )
    include_group_words: bool = True


class GeometryConfig(_Strict):
    pairs: int = Field(1000, ge=10)
    seed: int = 0
    clusters: int = Field(7, ge=1)
    pcs_removed: int | Literal["auto"] = Field(
        "auto", description="directions nulled per cluster by the enhancement; 'auto': clip(round(d/128), 1, 12)"
    )
    outlier_sigma: float = Field(3.0, gt=0)
    token_sample: int = Field(10000, ge=0, description="contextual models: token vectors sampled per layer")

    @field_validator("pcs_removed", mode="before")
    @classmethod
    def _pcs_removed(cls, v):
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        raise ValueError(f"must be 'auto' or a whole number >= 0, got {v!r}")

    def removed(self, d: int) -> int:
        """The directions the enhancement nulls per cluster for d-dimensional vectors. 'auto' scales the 12 that
        Rajaee & Pilehvar chose for 768-d BERT with d (d/128, halves rounded up, at least 1, at most 12): 1 for
        50-d GloVe, 3 for 384-d MiniLM, 6 for 768-d. Measured (benchmarks/results/isotropy-dims-*.json):
        WordSim353 on GloVe 50d is 0.503 raw, 0.516 with 1 removed, 0.381 with 12; MiniLM L3 0.712 raw, 0.750
        with 3, 0.666 with 12."""
        if self.pcs_removed != "auto":
            return int(self.pcs_removed)
        return int(min(12, max(1, math.floor(d / 128 + 0.5))))


class ProjectionConfig(_Strict):
    umap3d: bool = True
    umap2d: bool = True
    pca2: bool = True
    n_neighbors: int = Field(15, ge=2)
    min_dist: float = Field(0.1, ge=0)
    umap_epochs: int | None = Field(None, ge=10)
    neighbors: int = Field(20, ge=1, description="nearest neighbours by cosine stored per word")
    seed: int = 0
    aligned: bool = Field(
        True,
        description="contextual runs of 2+ layers: also fit every layer's word maps jointly (AlignedUMAP), and the "
        "SAE features' decoder maps for the Layers page",
    )


class _SAEBase(_Strict):
    """Settings every SAE architecture shares; each architecture's class adds only its own."""

    d_sae: int | None = Field(None, ge=1)
    expansion: float | None = Field(None, gt=0, description="d_sae = expansion x d when d_sae is not given")
    dead_steps: int = Field(200, ge=1, description="steps without firing before a feature counts as dead")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate (peak; warm-up 1%, linear decay over the last 20%)")
    batch_size: int = Field(512, ge=1)
    steps: int | None = Field(None, ge=1, description="default: from n, d and d_sae (compute/sae/train.py)")
    epochs: float | None = Field(None, gt=0)
    log_every: int = Field(50, ge=1)
    seed: int = 0
    train_on: Literal["words", "tokens"] | None = Field(
        None, description="word-type vectors or corpus token vectors; unset: tokens for transformers, else words"
    )
    train_tokens: int = Field(50000, ge=100, description="train_on tokens: token vectors sampled per layer")
    random_baseline: bool = Field(
        True, description="also train this SAE with its decoder frozen at random, the baseline of its scores"
    )

    def width(self, d: int) -> int:
        if self.d_sae is not None:
            return self.d_sae
        return max(1, int(round((self.expansion or 8.0) * d)))

    def summary_attrs(self) -> dict:
        """The architecture's headline settings, stored as `/sae` attributes beside `arch` and `d_sae`."""
        return {}


class _KSparse(_SAEBase):
    """Shared by the architectures that keep k active features per word (on average for batch_topk)."""

    k: int = Field(8, ge=1)
    aux_k: int | None = Field(None, ge=1, description="AuxK dead-feature revival; default d/2")
    aux_coef: float = Field(1 / 32, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.d_sae is not None and self.k > self.d_sae:
            raise ValueError(f"k ({self.k}) must not exceed d_sae ({self.d_sae})")
        return self

    def summary_attrs(self) -> dict:
        return {"k": int(self.k)}


class TopKConfig(_KSparse):
    """TopK (Gao et al. 2024): the k largest pre-activations of each word."""

    arch: Literal["topk"] = "topk"


class ReluL1Config(_SAEBase):
    """ReLU + L1 penalty (Anthropic, "Towards Monosemanticity" + the April 2024 update)."""

    arch: Literal["relu_l1"] = "relu_l1"
    l1: float = Field(5.0, ge=0, description="L1 coefficient")
    l1_warmup_frac: float = Field(0.05, ge=0, le=1)

    def summary_attrs(self) -> dict:
        return {"l1": float(self.l1)}


class BatchTopKConfig(_KSparse):
    """BatchTopK (Bussmann et al. 2024): the k x B largest pre-activations of a batch in training; at
    inference the features above a learned threshold; each row encoded at a common norm (row_norm)."""

    arch: Literal["batch_topk"] = "batch_topk"
    threshold_lr: float = Field(0.01, gt=0, le=1, description="step of the threshold's moving average")
    row_norm: bool = Field(True, description="encode each centred row scaled to a common norm, codes scaled back")


def _sae_arch(v) -> str:
    """The union's tag: `arch`, topk when omitted."""
    return v.get("arch", "topk") if isinstance(v, dict) else getattr(v, "arch", "topk")


# One entry per architecture (its class in compute/sae/ is registered under the same tag).
SAEConfig = Annotated[
    Annotated[TopKConfig, Tag("topk")]
    | Annotated[ReluL1Config, Tag("relu_l1")]
    | Annotated[BatchTopKConfig, Tag("batch_topk")],
    Discriminator(_sae_arch),
]
SAE_CONFIGS = (TopKConfig, ReluL1Config, BatchTopKConfig)
SAE_ARCHS = tuple(c.model_fields["arch"].default for c in SAE_CONFIGS)
_SAE_ADAPTER = TypeAdapter(SAEConfig)


def sae_config(data) -> _SAEBase:
    """Validate an SAE config dict (arch picks the class); raises PlanError with a one-line message."""
    try:
        return _SAE_ADAPTER.validate_python(data)
    except ValidationError as e:
        raise PlanError(format_validation_error(e, "sae")) from None


class ContextsConfig(_Strict):
    """Contextual runs: the token pass of compute/contexts.py (every corpus token through the layer's SAE)."""

    top_k: int = Field(32, ge=1, le=1000, description="top contexts kept per feature")
    per_word: int = Field(20, ge=1, le=1000, description="corpus contexts kept per word type")
    features_per_context: int = Field(5, ge=1, le=64, description="top features stored per word context")
    sample_size: int = Field(128, ge=5, le=10000, description="firing tokens sampled per feature for the quantiles")


class STSConfig(_Strict):
    path: str | None = Field(None, description="folder of stsb-<lang>-<split>.csv; default $LEXISCOPE_STS_DIR")
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    split: Literal["train", "dev", "test"] = "test"

    def folder(self) -> Path | None:
        p = self.path or settings().sts_dir
        return Path(p) if p else None


class RunConfig(_Strict):
    name: str | None = None
    model: str = Field(..., min_length=1)
    layers: Literal["all"] | list[int] = "all"
    corpus: str | list[str] | None = Field(
        None, description="contextual models: 'lee', 'stsb:<lang>' (every split), a .txt file or folder, or a list"
    )
    vocabulary: VocabularyConfig = Field(default_factory=VocabularyConfig)
    geometry: GeometryConfig = Field(default_factory=GeometryConfig)
    projections: ProjectionConfig = Field(default_factory=ProjectionConfig)
    sae: SAEConfig | None = Field(default_factory=TopKConfig)
    sts: STSConfig | None = None
    contexts: ContextsConfig | None = Field(default_factory=ContextsConfig)
    batch_size: int = Field(64, ge=1, description="contextual models: sentences per forward pass")

    @field_validator("corpus")
    @classmethod
    def _corpus(cls, v):
        for spec in corpus_sources(v):
            if not spec.strip():
                raise ValueError("an empty corpus source; use 'lee', 'stsb:<lang>', a .txt file or a folder")
            if spec.startswith("stsb:") and not spec[5:].strip():
                raise ValueError(f"'{spec}' names no language; use e.g. 'stsb:en'")
        if isinstance(v, list) and not v:
            raise ValueError("an empty list; name at least one source or leave corpus out")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"{next(s for s in v if v.count(s) > 1)!r} is listed twice")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v):
        if isinstance(v, list) and (not v or min(v) < 0):
            raise ValueError("layers must be 'all' or a non-empty list of layer numbers >= 0")
        return v

    def config_hash(self, layer: int) -> str:
        """Identity of the run for one layer: same hash, same result (everything is seeded)."""
        body = self.model_dump(mode="json", exclude={"name", "batch_size"})
        body["layers"] = None
        body["layer"] = int(layer)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def corpus_sources(corpus) -> list[str]:
    """A run's `corpus` as a list of sources (None = Lee)."""
    if corpus is None:
        return ["lee"]
    return [corpus] if isinstance(corpus, str) else list(corpus)


class Plan(_Strict):
    runs: list[RunConfig] = Field(..., min_length=1)
    sts_dir: str | None = Field(None, description="STS-B folder for runs whose sts.path is unset")


def format_validation_error(e: ValidationError, prefix: str = "plan") -> str:
    """The first error as one line: 'plan.runs[0].geometry.pairs: Input should be ...'."""
    err = e.errors()[0]
    where, arch = prefix, None
    for i, part in enumerate(err["loc"]):
        if part in SAE_ARCHS and (err["loc"][i - 1] if i else prefix) == "sae":
            arch = part  # the union tag pydantic inserts: sae.topk.k -> sae.k
            continue
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        where, msg = where + ".arch", f"'{err['ctx']['tag']}' is not one of {', '.join(map(repr, SAE_ARCHS))}"
    elif err["type"] == "extra_forbidden" and arch is not None:
        msg = f"not a setting of arch '{arch}'"
    extra = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{where}: {msg}{extra}"


def parse_plan(data, source: str = "plan") -> Plan:
    if not isinstance(data, dict):
        raise PlanError(f"{source}: expected a mapping with a 'runs' list, got {type(data).__name__}")
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        raise PlanError(format_validation_error(e, source)) from None


def load_plan(path=None) -> Plan:
    """Read and validate a YAML plan (the bundled default when path is None)."""
    p = Path(path) if path else DEFAULT_PLAN
    if not p.is_file():
        raise PlanError(f"plan file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PlanError(f"plan {p.name}: not valid YAML{where}") from None
    return parse_plan(data, source=p.name)


def parse_run(data, source: str = "run") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise PlanError(format_validation_error(e, source)) from None
