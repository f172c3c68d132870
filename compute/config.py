"""Typed, validated plans. A plan is a YAML file listing runs; see compute/data/default_plan.yaml."""

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
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
    pcs_removed: int = Field(12, ge=0)
    outlier_sigma: float = Field(3.0, gt=0)
    token_sample: int = Field(10000, ge=0, description="contextual models: token vectors sampled per layer")


class ProjectionConfig(_Strict):
    umap3d: bool = True
    umap2d: bool = True
    pca2: bool = True
    n_neighbors: int = Field(15, ge=2)
    min_dist: float = Field(0.1, ge=0)
    umap_epochs: int | None = Field(None, ge=10)
    neighbors: int = Field(20, ge=1, description="nearest neighbours by cosine stored per word")
    seed: int = 0


class SAEConfig(_Strict):
    arch: Literal["topk", "relu_l1"] = "topk"
    d_sae: int | None = Field(None, ge=1)
    expansion: float | None = Field(None, gt=0, description="d_sae = expansion x d when d_sae is not given")
    k: int = Field(8, ge=1)
    l1: float = Field(5.0, ge=0, description="relu_l1: L1 coefficient")
    l1_warmup_frac: float = Field(0.05, ge=0, le=1)
    aux_k: int | None = Field(None, ge=1, description="topk: AuxK dead-feature revival; default d/2")
    aux_coef: float = Field(1 / 32, ge=0)
    dead_steps: int = Field(200, ge=1, description="steps without firing before a feature counts as dead")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate (peak; warm-up 1%, linear decay over the last 20%)")
    batch_size: int = Field(512, ge=1)
    steps: int | None = Field(None, ge=1, description="default: from n, d and d_sae (compute/sae.py default_steps)")
    epochs: float | None = Field(None, gt=0)
    log_every: int = Field(50, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.d_sae is not None and self.arch == "topk" and self.k > self.d_sae:
            raise ValueError(f"k ({self.k}) must not exceed d_sae ({self.d_sae})")
        return self

    def width(self, d: int) -> int:
        if self.d_sae is not None:
            return self.d_sae
        return max(1, int(round((self.expansion or 8.0) * d)))


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
    corpus: str | None = Field(None, description="contextual models: 'lee', 'stsb:<lang>', a .txt file or folder")
    vocabulary: VocabularyConfig = Field(default_factory=VocabularyConfig)
    geometry: GeometryConfig = Field(default_factory=GeometryConfig)
    projections: ProjectionConfig = Field(default_factory=ProjectionConfig)
    sae: SAEConfig | None = Field(default_factory=SAEConfig)
    sts: STSConfig | None = None
    batch_size: int = Field(64, ge=1, description="contextual models: sentences per forward pass")

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


class Plan(_Strict):
    runs: list[RunConfig] = Field(..., min_length=1)
    sts_dir: str | None = Field(None, description="STS-B folder for runs whose sts.path is unset")


def format_validation_error(e: ValidationError, prefix: str = "plan") -> str:
    """The first error as one line: 'plan.runs[0].geometry.pairs: Input should be ...'."""
    err = e.errors()[0]
    where = prefix
    for part in err["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    msg = err["msg"].removeprefix("Value error, ")
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
