"""The job form as pure functions: form values -> run config dict, and a stored run's config -> form values
(the "Train another SAE on this run" shortcut). No Dash here, so it is tested without a browser.

Every value is treated as untrusted (a forged request can send any JSON in any field): each is checked for its
type and size before it is parsed, and nothing is expanded before it is bounded (a layer range is checked
against MAX_LAYERS before it becomes a list)."""

import re

import yaml

from dashboard.lib.text import split_words
from jobs.policy import MAX_LAYERS, MAX_NAME_CHARS, PlanError

# Characters per text field. A pasted word list at the default vocabulary cap (50,000 words) is ~0.5 MB.
MAX_TEXT_CHARS = {"words": 1_000_000, "groups_text": 1_000_000, "name": MAX_NAME_CHARS, "layers": 200}
MAX_NUMBER_CHARS = 20

DEFAULTS = dict(
    model=None,
    name="",
    layers="all",
    vocab_mode="top",
    top_n=2000,
    words="",
    groups_source="default",
    groups_text="",
    sae_arch="topk",
    d_sae=256,
    k=8,
    l1=5.0,
    steps=1000,
    umap=True,
    corpus="",
    train_on="default",
)
_SPLIT = re.compile(r"[\s,;]+")


def parse_layers(text) -> str | list[int]:
    """'all', or numbers and ranges ('0, 3, 5-6') -> sorted layer numbers. Every number is checked against
    MAX_LAYERS before a range is expanded, so '0-99999999' costs nothing."""
    text = _text(text, "layers").strip().lower()
    if text in ("", "all"):
        return "all"
    layers = set()
    for part in _SPLIT.split(text):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)  # the field holds 200 characters at most
        if not m:
            raise PlanError(
                f"layers: '{part[:20]}' is not a layer number or a range like 2-5; use e.g. 'all' or '0, 3, 6'"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi >= MAX_LAYERS:
            raise PlanError(f"layers: {hi} is too high; layer numbers go up to {MAX_LAYERS - 1} at most")
        if lo > hi:
            raise PlanError(f"layers: '{part}' runs backwards; write {hi}-{lo}")
        layers.update(range(lo, hi + 1))
    if not layers:
        return "all"
    return sorted(layers)


def parse_groups(text) -> dict[str, list[str]]:
    """Pasted concept groups: YAML ({animals: [dog, cat]}) or lines 'animals: dog, cat, horse'. YAML anchors and
    aliases are refused (they could expand a short text into a huge one), and so is nesting deeper than a
    mapping of lists."""
    text = _text(text, "groups_text")
    if not text.strip():
        raise PlanError("concept groups: paste at least one line 'group: word, word, ...'")
    try:
        _check_flat_yaml(text)
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        raise PlanError("concept groups: write one group a line, as 'group: word, word, ...'") from None
    if not isinstance(data, dict):
        raise PlanError("concept groups: write one group a line, as 'group: word, word, ...'")
    groups = {}
    for name, words in data.items():
        words = split_words(
            " ".join(map(str, words)) if isinstance(words, list) else str(words or ""), case_sensitive=True
        )
        if not words:
            raise PlanError(f"concept groups: group '{str(name)[:40]}' has no words")
        groups[str(name)] = words
    return groups


def _check_flat_yaml(text: str):
    depth = 0
    for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise PlanError("concept groups: YAML anchors and aliases (& and *) are not allowed here")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > 2:
                raise PlanError("concept groups: write one group a line, as 'group: word, word, ...'")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def groups_text(groups: dict) -> str:
    return "\n".join(f"{name}: {', '.join(words)}" for name, words in groups.items())


def _text(value, field: str) -> str:
    """A text field's value: a string (None is empty) no longer than its cap."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PlanError(f"{field}: expected text, got {type(value).__name__}")
    limit = MAX_TEXT_CHARS[field]
    if len(value) > limit:
        raise PlanError(f"{field}: {len(value):,} characters is over the limit of {limit:,}")
    return value


def _num(value, field, kind=int):
    if value is None or value == "":
        raise PlanError(f"{field}: a number is needed")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or len(str(value)) > MAX_NUMBER_CHARS:
        raise PlanError(f"{field}: '{str(value)[:MAX_NUMBER_CHARS]}' is not a number")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise PlanError(f"{field}: '{value}' is not a number") from None
    if kind is int and isinstance(value, float) and number != value:
        raise PlanError(f"{field}: '{value}' is not a whole number")
    return number


def _choice(value, field: str, choices: tuple) -> str:
    if value not in choices:
        raise PlanError(f"{field}: '{str(value)[:40]}' is not one of {', '.join(map(str, choices))}")
    return value


def form_config(v: dict, stored_groups=None) -> dict:
    """A run config dict from the form's values. `stored_groups(run_id) -> {group: [words]}` resolves a
    'run:<id>' concept-group choice. Raises PlanError (one line) for what the form itself cannot parse;
    everything else is validated by jobs.policy.check_run."""
    v = {**DEFAULTS, **{k: val for k, val in v.items() if val is not None}}
    if not v["model"]:
        raise PlanError("model: choose a model")
    if not isinstance(v["model"], str) or len(v["model"]) > 500:
        raise PlanError("model: choose a model from the list")
    cfg = {"model": v["model"], "layers": parse_layers(v["layers"])}
    name = _text(v.get("name"), "name").strip()
    if name:
        cfg["name"] = name
    vocab = {}
    words_text = _text(v["words"], "words")
    if _choice(v["vocab_mode"], "vocabulary", ("top", "words")) == "words":
        words = split_words(words_text, case_sensitive=True)
        if not words:
            raise PlanError("vocabulary.words: paste at least one word, or choose 'top N words'")
        vocab.update(top_n=0, words=words)
    else:
        vocab["top_n"] = _num(v["top_n"], "vocabulary.top_n")
        extra = split_words(words_text, case_sensitive=True)
        if extra:  # the form says so: pasted words join the top N
            vocab["words"] = extra
    src = v["groups_source"]
    if not isinstance(src, str):
        raise PlanError("concept groups: choose one of the list")
    if src == "none":
        vocab["concept_groups"] = None
    elif src == "paste":
        vocab["concept_groups"] = parse_groups(v["groups_text"])
    elif src.startswith("run:"):
        if stored_groups is None:
            raise PlanError("concept groups: stored groups are not available here")
        vocab["concept_groups"] = stored_groups(src[4:])
    else:
        vocab["concept_groups"] = "default"
    cfg["vocabulary"] = vocab
    if _choice(v["sae_arch"], "sae", ("topk", "batch_topk", "relu_l1", "none")) == "none":
        cfg["sae"] = None
    else:
        sae = {"arch": v["sae_arch"], "d_sae": _num(v["d_sae"], "sae.d_sae"), "steps": _num(v["steps"], "sae.steps")}
        if v["sae_arch"] in ("topk", "batch_topk"):
            sae["k"] = _num(v["k"], "sae.k")
        else:
            sae["l1"] = _num(v["l1"], "sae.l1", float)
        if v["train_on"] in ("words", "tokens"):
            sae["train_on"] = v["train_on"]
        cfg["sae"] = sae
    corpus = [s for s in _SPLIT.split(v["corpus"] or "") if s]
    if corpus:
        cfg["corpus"] = corpus if len(corpus) > 1 else corpus[0]
    if not v["umap"]:
        cfg["projections"] = {"umap3d": False, "umap2d": False}
    return cfg


def config_form(cfg: dict, layer: int | None = None, run_id: str | None = None) -> dict:
    """Form values that rebuild a stored run's config (one layer of it). Concept groups that came from
    a file on the server are offered as the groups stored in the run itself."""
    out = dict(DEFAULTS)
    out["model"] = cfg.get("model")
    out["name"] = cfg.get("name") or ""
    out["layers"] = "all" if layer is None else str(layer)
    vocab = cfg.get("vocabulary") or {}
    if vocab.get("words") and not vocab.get("top_n"):
        out.update(vocab_mode="words", words="\n".join(vocab["words"]))
    else:
        out["top_n"] = vocab.get("top_n", DEFAULTS["top_n"])
        if vocab.get("words"):
            out["words"] = "\n".join(vocab["words"])
    groups = vocab.get("concept_groups", "default")
    if groups is None:
        out["groups_source"] = "none"
    elif isinstance(groups, dict):
        out.update(groups_source="paste", groups_text=groups_text(groups))
    elif groups != "default" and run_id:
        out["groups_source"] = f"run:{run_id}"
    sae = cfg.get("sae")
    if sae is None:
        out["sae_arch"] = "none"
    else:
        out["sae_arch"] = sae.get("arch", "topk")
        for key in ("d_sae", "k", "l1", "steps"):
            if sae.get(key) is not None:
                out[key] = sae[key]
        out["train_on"] = sae.get("train_on") or "default"
    corpus = cfg.get("corpus")
    if corpus:
        out["corpus"] = ", ".join([corpus] if isinstance(corpus, str) else corpus)
    proj = cfg.get("projections") or {}
    out["umap"] = bool(proj.get("umap3d", True) or proj.get("umap2d", True))
    return out


def run_groups(words, group_idx, names) -> dict[str, list[str]]:
    """{group: [words]} as a run stores it (words/text, words/group, groups/names)."""
    out = {name: [] for name in names}
    for w, g in zip(words, group_idx):
        if 0 <= int(g) < len(names):
            out[names[int(g)]].append(str(w))
    return {k: v for k, v in out.items() if v}
