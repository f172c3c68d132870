"""Server-side paging, sorting and filtering of a DataFrame shown in a Dash DataTable (page_action,
sort_action and filter_action "custom"), in the DataTable's own filter syntax."""

import re

FILTER = re.compile(
    r"^\s*\{(?P<col>[^}]+)\}\s*(?P<op>[si]?(?:>=|<=|!=|<|>|=|ge|le|lt|gt|ne|eq|contains))\s+"
    r"(?P<val>.+?)\s*$"
)
WORD_OPS = {"ge": ">=", "le": "<=", "lt": "<", "gt": ">", "ne": "!=", "eq": "="}


def split_filter_part(part: str):
    """'{density} s> 0.01' -> ('density', '>', 0.01): one clause of the DataTable filter syntax."""
    m = FILTER.match(part or "")
    if not m:
        return None, None, None
    op = m["op"].lstrip("si") if m["op"] not in ("s", "i") else m["op"]
    op = WORD_OPS.get(op, op)
    value = m["val"]
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"`":
        value = value[1:-1]
    else:
        try:
            value = float(value)
        except ValueError:
            pass
    return m["col"], op, value


def table_page(frame, page: int, size: int, sort_by, filter_query: str):
    """(records of one page, page count) after filtering and sorting the per-run feature frame."""
    df = frame
    for part in (filter_query or "").split(" && "):
        col, op, value = split_filter_part(part)
        if col not in df:
            continue
        series = df[col]
        if op == "contains":
            df = df[series.astype(str).str.contains(str(value), case=False, regex=False)]
        elif op in (">=", "<=", "<", ">", "=", "!=") and isinstance(value, float) and series.dtype.kind in "fiu":
            df = df[
                {
                    ">=": series >= value,
                    "<=": series <= value,
                    "<": series < value,
                    ">": series > value,
                    "=": series == value,
                    "!=": series != value,
                }[op].loc[df.index]
            ]
        elif op in ("=", "!="):
            hit = series.astype(str) == str(value)
            df = df[hit if op == "=" else ~hit]
    if sort_by:
        s = sort_by[0]
        if s["column_id"] in df:
            df = df.sort_values(s["column_id"], ascending=s["direction"] == "asc", kind="stable", na_position="last")
    pages = max(1, -(-len(df) // size))
    chunk = df.iloc[page * size : (page + 1) * size]
    return [{**r, "id": r["feature"]} for r in chunk.to_dict("records")], pages
