"""Vocabulary: the top words of each language by wordfreq, extra word lists, and concept groups."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wordfreq
import yaml

from compute.config import DEFAULT_GROUPS, PlanError, VocabularyConfig
from store.schema import GROUPS, WORDS


@dataclass
class Vocabulary:
    words: list[str]
    langs: np.ndarray  # (n,) str: language of each row
    zipf: np.ndarray  # (n,) float32, NaN where wordfreq does not know the word
    groups: np.ndarray  # (n,) int16, -1 = no concept group
    group_names: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.words)

    def subset(self, rows) -> "Vocabulary":
        rows = np.asarray(rows, dtype=np.int64)
        return Vocabulary(
            [self.words[i] for i in rows], self.langs[rows], self.zipf[rows], self.groups[rows], self.group_names
        )

    def output(self) -> dict:
        """The /words and /groups datasets of a run."""
        return {
            WORDS.text: list(self.words),
            WORDS.lang: list(self.langs),
            WORDS.zipf: self.zipf.astype(np.float32),
            WORDS.group: self.groups.astype(np.int16),
            GROUPS.names: list(self.group_names),
        }


def load_concept_groups(spec: str | dict | None) -> dict[str, list[str]]:
    """'default', a YAML mapping {group: [words]}, or a TSV of 'group<TAB>word' lines; or the mapping itself."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return parse_groups(spec, "vocabulary.concept_groups")
    path = DEFAULT_GROUPS if spec == "default" else Path(spec)
    if not path.is_file():
        raise PlanError(f"vocabulary.concept_groups: file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".tsv", ".txt"):
        groups: dict[str, list[str]] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise PlanError(f"{path.name} line {n}: expected 'group<TAB>word'")
            groups.setdefault(parts[0].strip(), []).append(parts[1].strip())
        return groups
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise PlanError(f"vocabulary.concept_groups: {path.name} is not valid YAML") from None
    return parse_groups(data, path.name)


def parse_groups(data, source: str = "concept groups") -> dict[str, list[str]]:
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise PlanError(f"{source}: expected a mapping of group name -> list of words")
    return {str(k): [str(w).strip() for w in v if str(w).strip()] for k, v in data.items()}


def read_word_list(path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise PlanError(f"vocabulary.word_lists: file {p} does not exist")
    return [
        line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")
    ]


def _is_word(w: str) -> bool:
    return any(ch.isalpha() for ch in w)


def build(cfg: VocabularyConfig) -> Vocabulary:
    """Rows are unique per (word, language): top-N per language, then word lists, then group words."""
    groups = load_concept_groups(cfg.concept_groups)
    group_names = list(groups)
    group_of = {}
    for gi, name in enumerate(group_names):
        for w in groups[name]:
            group_of.setdefault(w, gi)

    rows: dict[tuple[str, str], None] = {}
    for lang in cfg.languages:
        if cfg.top_n:
            try:
                top = wordfreq.top_n_list(lang, cfg.top_n)
            except (LookupError, ValueError):
                raise PlanError(f"vocabulary.languages: wordfreq has no word list for '{lang}'") from None
            if not top:
                raise PlanError(f"vocabulary.languages: wordfreq has no word list for '{lang}'")
            for w in top:
                if _is_word(w):
                    rows.setdefault((w, lang), None)
    first = cfg.languages[0]
    extra = list(cfg.words)
    for path in cfg.word_lists:
        extra += read_word_list(path)
    if cfg.include_group_words:
        extra += [w for name in group_names for w in groups[name]]
    for w in extra:
        if not any((w, lang) in rows for lang in cfg.languages):
            rows.setdefault((w, first), None)

    words = [w for w, _ in rows]
    langs = np.array([lang for _, lang in rows], dtype=object)
    zipf = np.array([wordfreq.zipf_frequency(w, lang) for w, lang in rows], dtype=np.float32)
    zipf[zipf == 0] = np.nan
    group_idx = np.array([group_of.get(w, -1) for w in words], dtype=np.int16)
    return Vocabulary(words, langs, zipf, group_idx, group_names)
