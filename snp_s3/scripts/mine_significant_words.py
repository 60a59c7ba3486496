"""Mine SNP-S3's significant words from a caption corpus (spec §4, "Significant words").

Frequency of content parts of speech, no IDF, as ``auxiliary_files/generate_ss_word_json`` of the released
code: every caption is tagged (spaCy ``en_core_web_sm`` on real captions, or the toy world's part-of-speech
lexicon), VERB/NOUN/ADJ/NUM words are counted, and the counts are mapped onto the tokenizer's vocabulary,
keeping whole-word entries only (no ``##`` pieces). NUM, single characters, be/is/was/were/are and
"background(s)" are dropped. Ranks are competition ranks of the total count (ties share a rank; zero-count
ids all get ``1 + #ids with a count``). Significant = rank <= ``words_top_k`` (a config value).

Outputs (both named by the config):

* ``count_reprocess.json``: parallel lists over the vocabulary, ``id, name, total_count, verb_count,
  noun_count, adj_count, rank, verb_percentage, noun_percentage, adj_percentage`` (the released layout).
* ``vocab_simi_list.json``: per vocabulary id, the other whole-word ids with the same lemma (spaCy's lemma,
  or the toy lexicon's meaning: ``moves``/``slides``), used by MSSM's 10% replacement.

Usage::

    python -m snp_s3.scripts.mine_significant_words --captions data/webvid/train.jsonl \
        --tokenizer bert-base-uncased --pos spacy --out data/snp_s3/significant
    python -m snp_s3.scripts.mine_significant_words --captions data/toy/snp_s3/webvid/train.jsonl \
        --tokenizer data/toy/snp_s3/tokenizer.json --pos lexicon --out data/toy/snp_s3/significant
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

COUNTED = ("VERB", "NOUN", "ADJ", "NUM")
DROPPED = {"be", "is", "was", "were", "are", "background", "backgrounds"}


def read_captions(path: str | Path) -> list[str]:
    """Captions of a corpus file: jsonl (``caption``), MSR-VTT json (``sentences``), WebVid csv (``name``),
    a tsv whose first column is the caption, or plain text (one caption a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption corpus not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line)["caption"])
                except (ValueError, KeyError) as exc:
                    raise ValueError(f"{path}:{n}: expected a JSON object with a 'caption' ({exc})") from exc
        return out
    if path.suffix == ".json":
        return [s["caption"] for s in json.loads(text)["sentences"]]
    if path.suffix == ".csv":
        return [row["name"] for row in csv.DictReader(text.splitlines())]
    if path.suffix == ".tsv":
        return [row[0] for row in csv.reader(text.splitlines(), delimiter="\t") if row]
    return [line for line in text.splitlines() if line.strip()]


def lexicon_tagger() -> tuple[Callable[[str], list[tuple[str, str]]], Callable[[str], str]]:
    """The toy world's POS lexicon: (tag function, lemma function); lemma = the word's meaning tag."""
    from common.toyworld import lexicon

    lex = lexicon("en")

    def tag(caption: str) -> list[tuple[str, str]]:
        words = re.findall(r"[a-z0-9']+", caption.lower())
        # Fillers ("see", "takes place", "video") carry no content: only content entries are tagged.
        return [(w, lex[w].pos if w in lex and lex[w].meaning else "X") for w in words]

    def lemma(word: str) -> str:
        entry = lex.get(word)
        return entry.meaning if entry is not None and entry.meaning else word

    return tag, lemma


def spacy_tagger(model: str = "en_core_web_sm") -> tuple[Callable, Callable]:
    """spaCy's tagger and lemmatiser (the released code's choice); an optional extra."""
    try:
        import spacy
    except ImportError as exc:
        raise RuntimeError(
            "--pos spacy needs spaCy: pip install '.[spacy]' and python -m spacy download en_core_web_sm "
            "(or use --pos lexicon on toy-world captions)"
        ) from exc
    nlp = spacy.load(model)

    def tag(caption: str) -> list[tuple[str, str]]:
        return [(t.text.lower(), t.pos_) for t in nlp(caption)]

    def lemma(word: str) -> str:
        return nlp(word)[0].lemma_.lower()

    return tag, lemma


def competition_ranks(counts: Sequence[int]) -> list[int]:
    """Rank 1 for the largest count; ties share a rank; zero counts all get ``1 + #nonzero``."""
    order = sorted(set(c for c in counts if c > 0), reverse=True)
    above: dict[int, int] = {}
    seen = 0
    for c in order:
        above[c] = seen
        seen += sum(1 for x in counts if x == c)
    nonzero = sum(1 for c in counts if c > 0)
    return [above[c] + 1 if c > 0 else nonzero + 1 for c in counts]


def mine(
    captions: Iterable[str], vocab: dict[str, int], tag: Callable, lemma: Callable
) -> tuple[dict[str, list], list[list[int]]]:
    """Count content words over ``captions`` and map them to ``vocab`` (token -> id); see the module doc."""
    size = max(vocab.values()) + 1
    names = [""] * size
    for tok, i in vocab.items():
        names[i] = tok
    per_pos = {p: Counter() for p in COUNTED}
    for cap in captions:
        for word, pos in tag(cap):
            if pos in COUNTED:
                per_pos[pos][word] += 1

    def keep(tok: str) -> bool:
        return (
            bool(tok)
            and not tok.startswith("##")
            and not tok.startswith("[")
            and len(tok) > 1
            and (tok not in DROPPED and not tok.isdigit())
        )

    verb, noun, adj = (
        [per_pos[p][names[i]] if keep(names[i]) else 0 for i in range(size)] for p in COUNTED[:3]
    )
    total = [v + n + a for v, n, a in zip(verb, noun, adj)]
    rank = competition_ranks(total)

    def pct(x: list[int]) -> list[float]:
        return [round(a / t, 4) if t else 0.0 for a, t in zip(x, total)]

    table = {
        "id": list(range(size)), "name": names, "total_count": total, "verb_count": verb, "noun_count": noun,
        "adj_count": adj, "rank": rank, "verb_percentage": pct(verb), "noun_percentage": pct(noun),
        "adj_percentage": pct(adj),
    }  # fmt: skip
    by_lemma: dict[str, list[int]] = {}
    for i, tok in enumerate(names):
        if keep(tok):
            by_lemma.setdefault(lemma(tok), []).append(i)
    simi = [
        [j for j in by_lemma.get(lemma(tok), []) if j != i] if keep(tok) else []
        for i, tok in enumerate(names)
    ]
    return table, simi


def load_vocab(tokenizer: str) -> dict[str, int]:
    """A tokenizer's vocabulary: a ``tokenizers`` json, a ``vocab.txt``, or a local BERT folder / hub id."""
    p = Path(tokenizer)
    if p.suffix == ".json" and p.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(p)).get_vocab()
    if p.suffix == ".txt" and p.is_file():
        return {line.rstrip("\n"): i for i, line in enumerate(p.read_text(encoding="utf-8").splitlines())}
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(tokenizer).get_vocab()


def run(captions: str | Path, tokenizer: str, pos: str, out: str | Path) -> Path:
    """Mine and write ``count_reprocess.json`` and ``vocab_simi_list.json`` under ``out``."""
    tag, lemma = lexicon_tagger() if pos == "lexicon" else spacy_tagger()
    table, simi = mine(read_captions(captions), load_vocab(tokenizer), tag, lemma)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "count_reprocess.json").write_text(json.dumps(table))
    (out / "vocab_simi_list.json").write_text(json.dumps(simi))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", required=True, help="caption corpus (jsonl, MSR-VTT json, csv, tsv, txt)")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json, vocab.txt or a BERT folder / hub id")
    ap.add_argument("--pos", choices=("lexicon", "spacy"), default="lexicon")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--top_k", type=int, default=3000, help="report how many ids have rank <= top_k")
    a = ap.parse_args(argv)
    out = run(a.captions, a.tokenizer, a.pos, a.out)
    table = json.loads((out / "count_reprocess.json").read_text())
    top = [n for n, r in sorted(zip(table["name"], table["rank"]), key=lambda x: x[1]) if r <= a.top_k]
    print(f"wrote {out}: {len(top)} ids with rank <= {a.top_k}; top 20: {top[:20]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
