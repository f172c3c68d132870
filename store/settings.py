"""Every LEXISCOPE_* environment variable, read in one place (the README lists them).

`settings()` reads the environment afresh on each call: tests and `serve --auth` change it at run time,
and one read costs microseconds next to any request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(ValueError):
    """A LEXISCOPE_* variable that cannot be used; one line naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEXISCOPE_", extra="ignore", frozen=True)

    # where things are
    store: Path = Field(Path("lexiscope-store"), description="store root")
    sts_dir: Path | None = Field(None, description="folder of the STS-B files stsb-<lang>-<split>.csv")
    wordnet_dir: Path = Field(Path("/usr/share/wordnet"), description="WordNet 3.0 database (Debian: wordnet-base)")
    # the dashboard
    auth: str = Field("", description="basic auth for the dashboard: user:password[,user:password]")
    max_points: int | None = Field(None, ge=1, description="points drawn on a word map (default 20,000)")
    warm_up: bool = Field(True, description="build a run's indexes in the background when it is first opened")
    # jobs
    broker_url: str | None = Field(None, description="Celery broker (redis://host:6379/0); unset: embedded worker")
    heartbeat_timeout: float = Field(60.0, gt=0, description="seconds without a heartbeat before a job is crashed")
    jobs_policy: Path | None = Field(None, description="YAML file of the job form's allowlist and caps")
    models: Annotated[list[str] | None, NoDecode] = Field(None, description="comma-separated model allowlist")
    max_vocabulary: int | None = Field(None, ge=1, description="cap: words per queued run")
    max_sae_steps: int | None = Field(None, ge=1, description="cap: SAE training steps per queued run")
    max_d_sae: int | None = Field(None, ge=1, description="cap: SAE width per queued run")
    max_jobs_per_user: int | None = Field(None, ge=1, description="cap: queued or running jobs per user")
    # compute
    processes: int = Field(
        0, ge=0, description="worker processes a run's independent pieces use (0: the usable cores; 1: none)"
    )
    # benchmarks
    bench_dir: Path | None = Field(None, description="benchmark cache (default ~/.cache/lexiscope-bench)")
    bench_threads: int = Field(1, ge=0, description="torch/BLAS threads in the benchmarks (0: library defaults)")
    bench_reuse: bool = Field(False, description="benchmarks: reuse figures of workers that already finished")
    bench_deadline: float | None = Field(None, description="benchmarks: epoch time after which scaling sizes stop")
    bench_scaling_sizes: str | None = Field(None, description="benchmarks: comma-separated vocabulary sizes")

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, v):
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()] or None
        return v

    @field_validator("sts_dir", "jobs_policy", "bench_dir", "max_points", "broker_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, v):
        return None if isinstance(v, str) and not v.strip() else v


def settings() -> Settings:
    """The current settings; a bad value raises SettingsError with one line naming the variable."""
    try:
        return Settings()
    except ValidationError as e:
        err = e.errors()[0]
        name = "LEXISCOPE_" + str(err["loc"][0]).upper() if err["loc"] else "LEXISCOPE_*"
        what = "is not a whole number" if err["type"] == "int_parsing" else err["msg"][:1].lower() + err["msg"][1:]
        raise SettingsError(f"{name}: '{err.get('input')}' {what}") from None
