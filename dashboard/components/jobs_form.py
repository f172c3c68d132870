"""The job form as pure functions: form values -> run config dict, and a stored run's config -> form values
(the "Train another SAE on this run" shortcut). No Dash here, so it is tested without a browser."""

import re

import yaml

from dashboard.lib.text import split_words
from jobs.policy import PlanError

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
    text = str(text if text is not None else "").strip().lower()
    if text in ("", "all"):
        return "all"
    layers = []
    for part in _SPLIT.split(text):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise PlanError(f"layers: '{part}' is not a layer number or a range like 2-5; use e.g. 'all' or '0, 3, 6'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        layers += range(lo, hi + 1)
    return sorted(set(layers))


def parse_groups(text: str | None) -> dict[str, list[str]]:
    """Pasted concept groups: YAML ({animals: [dog, cat]}) or lines 'animals: dog, cat, horse'."""
    if not (text or "").strip():
        raise PlanError("concept groups: paste at least one line 'group: word, word, ...'")
    try:
        data = yaml.safe_load(text)
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
            raise PlanError(f"concept groups: group '{name}' has no words")
        groups[str(name)] = words
    return groups


def groups_text(groups: dict) -> str:
    return "\n".join(f"{name}: {', '.join(words)}" for name, words in groups.items())


def _num(value, field, kind=int):
    if value is None or value == "":
        raise PlanError(f"{field}: a number is needed")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise PlanError(f"{field}: '{value}' is not a number") from None


def form_config(v: dict, stored_groups=None) -> dict:
    """A run config dict from the form's values. `stored_groups(run_id) -> {group: [words]}` resolves a
    'run:<id>' concept-group choice. Raises PlanError (one line) for what the form itself cannot parse;
    everything else is validated by jobs.policy.check_run."""
    v = {**DEFAULTS, **{k: val for k, val in v.items() if val is not None}}
    if not v["model"]:
        raise PlanError("model: choose a model")
    cfg = {"model": v["model"], "layers": parse_layers(v["layers"])}
    if (v.get("name") or "").strip():
        cfg["name"] = v["name"].strip()
    vocab = {}
    if v["vocab_mode"] == "words":
        words = split_words(v["words"], case_sensitive=True)
        if not words:
            raise PlanError("vocabulary.words: paste at least one word, or choose 'top N words'")
        vocab.update(top_n=0, words=words)
    else:
        vocab["top_n"] = _num(v["top_n"], "vocabulary.top_n")
    src = v["groups_source"]
    if src == "none":
        vocab["concept_groups"] = None
    elif src == "paste":
        vocab["concept_groups"] = parse_groups(v["groups_text"])
    elif isinstance(src, str) and src.startswith("run:"):
        if stored_groups is None:
            raise PlanError("concept groups: stored groups are not available here")
        vocab["concept_groups"] = stored_groups(src[4:])
    else:
        vocab["concept_groups"] = "default"
    cfg["vocabulary"] = vocab
    if v["sae_arch"] in (None, "none"):
        cfg["sae"] = None
    else:
        sae = {"arch": v["sae_arch"], "d_sae": _num(v["d_sae"], "sae.d_sae"), "steps": _num(v["steps"], "sae.steps")}
        if v["sae_arch"] == "topk":
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
