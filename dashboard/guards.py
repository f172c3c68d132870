"""What the app does with requests it cannot serve, for every page at once (pages need no checks of their own):

- a request body over MAX_REQUEST_BYTES is refused by Flask with 413 before it is read;
- a callback request that Dash cannot dispatch (an unknown callback, inputs of the wrong shape, a body that is
  not a callback at all, such as `{}`) gets 400 with one line, not a 500;
- a callback that raises on the values it was sent (forged types: a list where a word goes, `page_size: "abc"`)
  leaves its outputs as they are (an ignored update) and the failure goes to the log.

A forged value can then cost at most one ignored update; it never reaches the user as a traceback."""

import logging

import flask
from dash import callback_context
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger("lexiscope.dashboard")

# The largest legitimate request is the job form with a pasted word list at the vocabulary cap (50,000 words of
# ~10 characters, ~0.5 MB) plus the concept groups; 4 MB leaves room for that and bounds everything else.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
CALLBACK_ROUTE = "_dash-update-component"


def callback_failed(e: Exception):
    """Dash's app-wide on_error: the callback's outputs stay unchanged (None means no update)."""
    try:
        where = callback_context.outputs_list
    except Exception:  # noqa: BLE001 - outside a callback context nothing more can be said
        where = "?"
    log.warning("callback for %s ignored its input: %s: %s", _short(where), type(e).__name__, _short(e), exc_info=e)
    return None


def _bad_callback_request(e: Exception):
    if isinstance(e, HTTPException):  # 401 from auth, 413 from the size cap, 400 from bad JSON: as they are
        return e
    if not flask.request.path.endswith(CALLBACK_ROUTE):
        log.error("request %s failed", flask.request.path, exc_info=e)
        return InternalServerError()
    log.warning("refused a malformed callback request: %s: %s", type(e).__name__, _short(e))
    return f"bad callback request ({type(e).__name__})", 400, {"Content-Type": "text/plain"}


def install(app):
    """Put the request cap and the 400 answer on a Dash app's server (the ignored updates come from passing
    callback_failed as the app's on_error). Dash's debug mode replaces the handler with its own tracebacks."""
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.server.register_error_handler(Exception, _bad_callback_request)


def _short(value, n: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= n else text[: n - 1] + "…"
