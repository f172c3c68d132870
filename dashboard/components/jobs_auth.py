"""Optional basic auth for the whole app (the standard dash-auth package), and the current user's name
for job records and the per-user job cap. Switched on by LEXISCOPE_AUTH='alice:secret,bob:pw' (or
`lexiscope serve --auth ...`, which sets it). Use it behind HTTPS: basic auth sends the password in
every request."""

from store.settings import settings


def parse_users(spec: str) -> dict[str, str]:
    users = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"LEXISCOPE_AUTH: '{user or item}' needs the form user:password")
        users[user] = password
    return users


def enable_auth(app, spec: str | None = None) -> bool:
    """Protect every page and callback of `app` with basic auth when users are configured."""
    users = parse_users(spec if spec is not None else settings().auth)
    if not users:
        return False
    from dash_auth import BasicAuth

    BasicAuth(app, users)
    return True


def auth_enabled() -> bool:
    """Whether users are configured (then every request carries a checked user name)."""
    try:
        return bool(parse_users(settings().auth))
    except ValueError:
        return False


def current_user() -> str:
    """The basic-auth user of this request, or 'anonymous' when auth is off."""
    try:
        import flask

        auth = flask.request.authorization
        return (auth.username if auth and auth.username else None) or "anonymous"
    except RuntimeError:  # outside a request
        return "anonymous"
