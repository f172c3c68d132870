"""Words typed or pasted into a page."""

import re

_SEPARATORS = re.compile(r"[\s,;]+")


def split_words(text: str | None, case_sensitive: bool = False) -> list[str]:
    """Words pasted one a line, or separated by spaces, commas or semicolons; duplicates dropped, order kept.
    Duplicates differ only in case ('Cat' after 'cat'; the first spelling is kept), as the pages look words
    up; with `case_sensitive`, as a run's vocabulary stores them ('Apple' and 'apple' are two rows)."""
    seen, out = set(), []
    for w in _SEPARATORS.split(text or ""):
        key = w if case_sensitive else w.lower()
        if w and key not in seen:
            seen.add(key)
            out.append(w)
    return out
