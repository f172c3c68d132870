"""The admin policy: what the dashboard's job form may ask for. Read from store.settings: the YAML file named by
$LEXISCOPE_JOBS_POLICY (the model's keys), then the LEXISCOPE_MODELS / LEXISCOPE_MAX_* variables over it."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from compute.config import PlanError, RunConfig, corpus_sources, parse_run  # PlanError: the dashboard takes it here
from store.settings import SettingsError, settings

DEFAULT_MODELS = ("glove-6b-50d", "minilm-l6")
NAMED_CORPORA = ("lee",)
MAX_EXPANSION = 64  # d_sae / d when only `expansion` is given (the input width is not known before loading)
_CAPS = ("max_vocabulary", "max_sae_steps", "max_d_sae", "max_jobs_per_user")


class Policy(BaseModel):
    """The model allowlist and the caps of one server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = list(DEFAULT_MODELS)
    max_vocabulary: int = 50_000  # words per run (top_n x languages + pasted words)
    max_sae_steps: int = 20_000
    max_d_sae: int = 16_384
    max_jobs_per_user: int = 3  # queued or running at once

    @field_validator("models", mode="before")
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


def check_run(data, policy: Policy | None = None, source: str = "run") -> RunConfig:
    """Validate a run config; with a policy, also enforce the allowlist and the caps and refuse anything
    that reads server files. Raises PlanError with one line naming the field."""
    cfg = parse_run(data, source)
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
    n_words = v.top_n * len(v.languages) + len(v.words)
    if n_words > policy.max_vocabulary:
        raise PlanError(
            f"{source}.vocabulary.top_n: {n_words:,} words is over this server's limit of {policy.max_vocabulary:,}"
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
