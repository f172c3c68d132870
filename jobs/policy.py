"""The admin policy: what the dashboard's job form may ask for. Read from store.settings: the YAML file named by
$LEXISCOPE_JOBS_POLICY (the model's keys), then the LEXISCOPE_MODELS / LEXISCOPE_MAX_* variables over it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from compute.config import PlanError, RunConfig, corpus_sources, parse_run  # PlanError: the dashboard takes it here
from compute.embeddings import is_static
from store.schema import COMPARISON_SEP, run_path
from store.settings import SettingsError, settings

DEFAULT_MODELS = ("glove-6b-50d", "minilm-l6")
NAMED_CORPORA = ("lee",)
MAX_EXPANSION = 64  # d_sae / d when only `expansion` is given (the input width is not known before loading)
# Hard caps that hold for every submission, checked before anything is expanded or allocated. The deepest
# public transformers have ~100 layers; the exact count is only known once the worker loads the model.
MAX_LAYERS = 128  # layer numbers 0..127
MAX_NAME_CHARS = 100  # a run name, a concept group's name
MAX_WORD_CHARS = 100  # one pasted word
MAX_GROUPS = 200  # pasted concept groups
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_CAPS = ("max_vocabulary", "max_sae_steps", "max_d_sae", "max_jobs_per_user")


class Policy(BaseModel):
    """The model allowlist and the caps of one server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = list(DEFAULT_MODELS)
    max_vocabulary: int = 50_000  # words per run (top_n x languages + pasted words)
    max_sae_steps: int = 20_000
    max_d_sae: int = 16_384
    max_jobs_per_user: int = 3  # queued or running at once
    admins: list[str] = []  # basic-auth users who may cancel anyone's job (the owner always may)

    @field_validator("models", "admins", mode="before")
    @classmethod
    def _names(cls, v):
        return [str(m) for m in v] if isinstance(v, list) else v

    @classmethod
    def load(cls) -> Policy:
        """The policy now in force; PlanError (one line) when a setting or the YAML file is bad."""
        try:
            env = settings()
        except SettingsError as e:
            raise PlanError(str(e)) from None
        data = _read_yaml(env.jobs_policy) if env.jobs_policy else {}
        if env.models:
            data["models"] = list(env.models)
        data.update({key: getattr(env, key) for key in _CAPS if getattr(env, key) is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(part) for part in err["loc"][:1])
            raise PlanError(
                f"LEXISCOPE_JOBS_POLICY: {where}: '{err.get('input')}' is not a whole number"
                if err["type"].startswith("int")
                else f"LEXISCOPE_JOBS_POLICY: {where}: {err['msg']}"
            ) from None


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PlanError(f"LEXISCOPE_JOBS_POLICY: cannot read {path} ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise PlanError(f"LEXISCOPE_JOBS_POLICY: {path} is not a mapping of the keys {', '.join(Policy.model_fields)}")
    unknown = set(data) - set(Policy.model_fields)
    if unknown:
        raise PlanError(f"LEXISCOPE_JOBS_POLICY: unknown keys {sorted(unknown)}")
    return data


def check_layers(cfg: RunConfig, source: str = "run"):
    """Layers a model can have: only layer 0 for static vectors; at most MAX_LAYERS otherwise."""
    if cfg.layers == "all":
        return
    if is_static(cfg.model) and cfg.layers != [0]:
        raise PlanError(f"{source}.layers: '{cfg.model}' is a static model; it has only layer 0 (or use 'all')")
    if len(cfg.layers) > MAX_LAYERS or max(cfg.layers) >= MAX_LAYERS:
        raise PlanError(f"{source}.layers: layer numbers go up to {MAX_LAYERS - 1} at most")


def vocabulary_size(cfg: RunConfig) -> tuple[int, int]:
    """(most words the run can have, of which pasted): top_n per language, plus every pasted word and every word
    of pasted concept groups (they join the vocabulary with include_group_words). An upper bound: the final
    vocabulary drops duplicates and words the model lacks. The default groups (the admin's file) are not counted."""
    v = cfg.vocabulary
    groups = v.concept_groups if isinstance(v.concept_groups, dict) and v.include_group_words else {}
    pasted = len(v.words) + sum(len(words) for words in groups.values())
    return v.top_n * len(v.languages) + pasted, pasted


def _check_sizes(cfg: RunConfig, source: str):
    """Bounded strings and lists (the request as a whole is capped by the web server)."""
    v = cfg.vocabulary
    if cfg.name is not None and len(cfg.name) > MAX_NAME_CHARS:
        raise PlanError(f"{source}.name: {len(cfg.name):,} characters; at most {MAX_NAME_CHARS}")
    groups = v.concept_groups if isinstance(v.concept_groups, dict) else {}
    if len(groups) > MAX_GROUPS:
        raise PlanError(f"{source}.vocabulary.concept_groups: {len(groups):,} groups; at most {MAX_GROUPS}")
    for name, words in groups.items():
        if len(name) > MAX_NAME_CHARS:
            raise PlanError(
                f"{source}.vocabulary.concept_groups: a group name of {len(name):,} characters; at most {MAX_NAME_CHARS}"
            )
        _check_words(words, f"{source}.vocabulary.concept_groups.{name}")
    _check_words(v.words, f"{source}.vocabulary.words")
    if len(v.languages) > 20:
        raise PlanError(f"{source}.vocabulary.languages: {len(v.languages)} languages; at most 20")


def _check_words(words: list[str], where: str):
    long = next((w for w in words if len(w) > MAX_WORD_CHARS), None)
    if long is not None:
        raise PlanError(f"{where}: a word of {len(long):,} characters ('{long[:20]}…'); at most {MAX_WORD_CHARS}")


def check_compare(data, root=None) -> tuple[str, str]:
    """Validate a compare job's config {"run_a": id, "run_b": id}: two different runs of this store's catalog
    (so a forged id never reaches a file name). Returns (run_a, run_b); PlanError (one line) otherwise."""
    if not isinstance(data, dict) or set(data) != {"run_a", "run_b"}:
        raise PlanError("compare: give exactly two run ids, run_a and run_b")
    ids = []
    for key in ("run_a", "run_b"):
        value = data[key]
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS + 20:
            raise PlanError(f"compare.{key}: not a run id")
        ids.append(value)
    if ids[0] == ids[1]:
        raise PlanError(f"compare: run {ids[0]} against itself; pick two different runs")
    for key, value in zip(("run_a", "run_b"), ids):
        # A run id as run_id_for makes it; checked before it becomes part of a path.
        if not RUN_ID.fullmatch(value) or COMPARISON_SEP in value or not run_path(root, value).is_file():
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise PlanError(f"compare.{key}: run '{shown}' is not in the store")
    return ids[0], ids[1]


def check_run(data, policy: Policy | None = None, source: str = "run") -> RunConfig:
    """Validate a run config; with a policy, also enforce the allowlist and the caps and refuse anything
    that reads server files. Raises PlanError with one line naming the field."""
    cfg = parse_run(data, source)
    check_layers(cfg, source)
    if policy is None:
        return cfg
    if cfg.model not in policy.models:
        raise PlanError(
            f"{source}.model: '{cfg.model}' is not on this server's model list ({', '.join(policy.models)})"
        )
    v = cfg.vocabulary
    if v.word_lists:
        raise PlanError(f"{source}.vocabulary.word_lists: server files are not allowed here; paste the words")
    if isinstance(v.concept_groups, str) and v.concept_groups != "default":
        raise PlanError(
            f"{source}.vocabulary.concept_groups: server files are not allowed here; use 'default' or paste the groups"
        )
    for spec in corpus_sources(cfg.corpus) if cfg.corpus is not None else []:
        if spec not in NAMED_CORPORA and not spec.startswith("stsb:"):
            raise PlanError(
                f"{source}.corpus: '{spec}': only the named corpora ('lee', 'stsb:<lang>') are allowed here"
            )
    if cfg.sts is not None and cfg.sts.path is not None:
        raise PlanError(f"{source}.sts.path: server paths are not allowed here")
    _check_sizes(cfg, source)
    n_words, pasted = vocabulary_size(cfg)
    if n_words == 0:
        raise PlanError(f"{source}.vocabulary.top_n: the run would have no words; ask for top N words or paste some")
    if n_words > policy.max_vocabulary:
        parts = (
            f" ({v.top_n * len(v.languages):,} top words + {pasted:,} pasted words and group words)" if pasted else ""
        )
        raise PlanError(
            f"{source}.vocabulary.top_n: {n_words:,} words is over this server's limit of "
            f"{policy.max_vocabulary:,}{parts}"
        )
    if cfg.sae is not None:
        s = cfg.sae
        steps = (
            s.steps
            if s.steps is not None
            else (int(s.epochs * n_words / max(1, min(s.batch_size, n_words or 1))) if s.epochs else 4000)
        )
        if steps > policy.max_sae_steps:
            raise PlanError(
                f"{source}.sae.steps: {steps:,} steps is over this server's limit of {policy.max_sae_steps:,}"
            )
        if s.d_sae is not None and s.d_sae > policy.max_d_sae:
            raise PlanError(
                f"{source}.sae.d_sae: {s.d_sae:,} features is over this server's limit of {policy.max_d_sae:,}"
            )
        if s.d_sae is None and s.expansion is not None and s.expansion > MAX_EXPANSION:
            raise PlanError(
                f"{source}.sae.expansion: {s.expansion:g} is over this server's limit of "
                f"{MAX_EXPANSION}; give d_sae instead"
            )
    return cfg
