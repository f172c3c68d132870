"""compute/labels.py: WordNet supersenses (checked against the database files read directly) and fallbacks."""

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from compute import labels

WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(
    bool(labels.missing_files(WORDNET)), reason="WordNet 3.0 not installed (apt-get install wordnet-base)"
)
POS_FILES = {"n": ("noun", 1), "v": ("verb", 2), "a": ("adj", 3), "r": ("adv", 4)}


@pytest.fixture(scope="module")
def reader():
    return labels.open_wordnet(WORDNET)


@functools.lru_cache(maxsize=1)
def tag_counts() -> dict[str, int]:
    counts = {}
    for line in (WORDNET / "cntlist.rev").read_text().splitlines():
        key, _, cnt = line.split()
        counts[key] = int(cnt)
    return counts


def direct_weights(word: str, lemmas_by_pos: dict[str, str]) -> dict[str, float]:
    """Independent reference: index.<pos> -> synset offsets, data.<pos> -> lexicographer file and lex_id,
    cntlist.rev -> tag counts by sense key; the policy's weights (counts, or 1/rank when all are 0)."""
    counts = tag_counts()
    senses = []
    for pos, lemma in lemmas_by_pos.items():
        name, ss_num = POS_FILES[pos]
        index = {
            ln.split()[0]: ln.split()
            for ln in (WORDNET / f"index.{name}").read_text().splitlines()
            if not ln.startswith(" ")
        }
        if lemma not in index:
            continue
        fields = index[lemma]
        n_synsets = int(fields[2])
        offsets = fields[-n_synsets:]
        with open(WORDNET / f"data.{name}", "rb") as fp:
            for rank, off in enumerate(offsets):
                fp.seek(int(off))
                parts = fp.readline().decode().split()
                lex_filenum, w_cnt = int(parts[1]), int(parts[3], 16)
                lex_id = next(int(parts[5 + 2 * k], 16) for k in range(w_cnt) if parts[4 + 2 * k].lower() == lemma)
                key = f"{lemma}%{ss_num}:{lex_filenum:02d}:{lex_id:02d}::"
                senses.append((labels.LEXNAMES[lex_filenum], counts.get(key, 0), rank))
    by_count = sum(c for _, c, _ in senses) > 0
    out = {}
    for lexname, c, rank in senses:
        out[lexname] = out.get(lexname, 0.0) + (c if by_count else 1 / (rank + 1))
    return out


@needs_wordnet
@pytest.mark.parametrize(
    "word, lemmas",
    [
        ("dog", {"n": "dog", "v": "dog"}),
        ("bank", {"n": "bank", "v": "bank"}),
        ("ran", {"v": "run"}),  # verb.exc: ran -> run
        ("violins", {"n": "violin"}),  # morphy strips the plural
    ],
)
def test_sense_weights_match_the_database_files(reader, word, lemmas):
    got = labels.sense_weights(reader, word)
    want = direct_weights(word, lemmas)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k])


@needs_wordnet
def test_supersenses_of_a_small_vocabulary(reader):
    words = ["dog", "Paris", "ran", "the", "2009", "apple", "quickly"]
    lab = labels.supersenses(words, reader=reader)
    assert len(lab.names) == 45 and lab.weights.shape == lab.member.shape == (7, 45)
    carried = {w: {lab.names[j] for j in lab.member[i].indices} for i, w in enumerate(words)}
    assert "noun.animal" in carried["dog"] and "noun.location" in carried["Paris"]
    assert "verb.motion" in carried["ran"] and "noun.food" in carried["apple"] and carried["quickly"] == {"adv.all"}
    assert carried["the"] == set() and carried["2009"] == set()  # function word; not in WordNet
    sums = np.asarray(lab.weights.sum(1)).ravel()
    np.testing.assert_allclose(sums, [1, 1, 1, 0, 0, 1, 1], atol=1e-6)
    assert np.all(lab.weights.toarray()[lab.member.toarray()] >= labels.MIN_SHARE - 1e-6)
    assert lab.coverage == pytest.approx(5 / 7)
    # dog's noun.person senses have tag count 0 beside counted ones: no weight, and no stored zero either
    assert labels.sense_weights(reader, "dog")["noun.person"] == 0
    assert (lab.weights.data > 0).all() and lab.weights[0, lab.names.index("noun.person")] == 0


def test_absent_wordnet_returns_none_and_logs_one_line(tmp_path, caplog, monkeypatch):
    assert labels.supersenses(["dog"], tmp_path) is None
    monkeypatch.setenv("LEXISCOPE_WORDNET_DIR", str(tmp_path / "nowhere"))
    assert labels.open_wordnet() is None  # the setting is the default path
    with caplog.at_level(logging.WARNING, logger="lexiscope.compute"):
        labels.log_wordnet_missing()
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "\n" not in line and str(tmp_path / "nowhere") in line and "wordnet-base" in line


def test_group_labels_and_combine():
    g = labels.group_labels(np.array([0, -1, 1, 0]), ["animals", "colours"])
    assert g.names == ["group.animals", "group.colours"]
    np.testing.assert_array_equal(g.member.toarray(), [[1, 0], [0, 0], [0, 1], [1, 0]])
    both = labels.combine(None, g, g)
    assert both.names == g.names * 2 and both.member.shape == (4, 4) and sp.isspmatrix_csr(both.member)
    assert list(both.counts()) == [2, 1, 2, 1]
    with pytest.raises(ValueError, match="groups"):
        labels.group_labels(np.array([0, 2]), ["animals"])


def test_run_labels_without_wordnet_keeps_the_groups_and_logs_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lexiscope.compute"):
        lab = labels.run_labels(["dog", "red"], np.array([0, 1]), ["animals", "colours"], path=tmp_path)
    assert lab.names == ["group.animals", "group.colours"]
    assert len(caplog.records) == 1 and "WordNet 3.0 not found" in caplog.records[0].getMessage()


@needs_wordnet
def test_run_labels_with_wordnet_puts_supersenses_first():
    lab = labels.run_labels(["dog", "red"], np.array([0, -1]), ["animals"], path=WORDNET)
    assert lab.names[:45] == list(labels.LEXNAMES) and lab.names[45:] == ["group.animals"]
    assert lab.member[0, lab.names.index("noun.animal")] and lab.member[0, 45]
