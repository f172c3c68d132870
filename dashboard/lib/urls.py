"""URLs carry the whole view state: ?run=&word=&feature=&dim= (plus page-specific options)."""

from urllib.parse import parse_qs, urlencode

STATE_KEYS = ("run", "word", "feature", "dim")


def href(path: str, run=None, **params) -> str:
    """'/words?run=r&word=cat' from a path and parameters; None and '' values are left out."""
    query = {"run": run, **params}
    query = {k: v for k, v in query.items() if v is not None and v != ""}
    return f"{path}?{urlencode(query)}" if query else path


def parse(search: str | None) -> dict:
    """The query string of a URL as {key: last value}."""
    if not search:
        return {}
    return {k: v[-1] for k, v in parse_qs(search.lstrip("?"), keep_blank_values=False).items()}


def with_params(pathname: str, search: str | None, **changes) -> str:
    """The current URL with some parameters replaced (None removes one)."""
    query = parse(search)
    query.update(changes)
    run = query.pop("run", None)
    return href(pathname or "/", run=run, **query)


def as_int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
