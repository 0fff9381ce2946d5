"""Real English text nobody in this project wrote, as deterministic token slices.

Sources (all offline):

* ``shared/data/texts/`` -- Pride and Prejudice (Austen, public domain), The Devil's
  Dictionary (Bierce, public domain), a TinyStories-style sample (for stories260K).
* ``/usr/share/common-licenses/`` (Debian ``base-files``) -- GPL-3, LGPL-2.1, GFDL-1.3,
  MPL-2.0, Apache-2.0: long legal prose.
* ``/usr/share/info/`` (Debian ``coreutils`` / ``gettext-base`` docs, GFDL) -- the
  coreutils and gettext manuals: technical prose.

A *document* is a named source plus a start marker; :func:`load_tokens` returns the
first ``n_tokens`` tokens of the text from that marker on, for a given tokenizer, so
the same name + tokenizer + length always gives the same tokens.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["Document", "DOCUMENTS", "EVAL_DOCS", "POWER_DOCS", "CALIB_DOC", "QUICK_DOCS",
           "texts_dir", "list_documents", "load_text", "load_tokens", "char_span"]


def texts_dir() -> Path:
    here = Path(__file__).resolve()
    for base in here.parents:
        cand = base / "shared" / "data" / "texts"
        if cand.is_dir():
            return cand
    return Path("/work/shared/data/texts")


@dataclass(frozen=True)
class Document:
    name: str
    title: str
    path: str             # absolute, or relative to texts_dir()
    start: Optional[str] = None   # regex: the text starts at its first match (line start)
    kind: str = "prose"

    def resolve(self) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else texts_dir() / p


DOCUMENTS: dict[str, Document] = {d.name: d for d in [
    Document("pride_ch1", "Pride and Prejudice, from Chapter 1 (Austen)",
             "pride_and_prejudice.txt", r"^Chapter 1\n", "fiction"),
    Document("pride_ch34", "Pride and Prejudice, from Chapter 34 (Austen)",
             "pride_and_prejudice.txt", r"^Chapter 34\n", "fiction"),
    Document("devils_dictionary", "The Devil's Dictionary, from 'ABASEMENT' (Bierce)",
             "devils_dictionary.txt", r"^ABASEMENT, n\.", "dictionary"),
    Document("devils_magic", "The Devil's Dictionary, from 'MAGIC' (Bierce)",
             "devils_dictionary.txt", r"^MAGIC, n\.", "dictionary"),
    Document("gpl3", "GNU General Public License v3", "/usr/share/common-licenses/GPL-3",
             None, "legal"),
    Document("lgpl21", "GNU Lesser General Public License v2.1",
             "/usr/share/common-licenses/LGPL-2.1", None, "legal"),
    Document("gfdl13", "GNU Free Documentation License 1.3",
             "/usr/share/common-licenses/GFDL-1.3", None, "legal"),
    Document("mpl2", "Mozilla Public License 2.0", "/usr/share/common-licenses/MPL-2.0",
             None, "legal"),
    Document("apache2", "Apache License 2.0", "/usr/share/common-licenses/Apache-2.0",
             None, "legal"),
    Document("coreutils_sort", "GNU Coreutils manual, from 'sort invocation'",
             "/usr/share/info/coreutils.info.gz", r"^7\.1 .sort.: Sort text files", "technical"),
    Document("gettext_intro", "GNU gettext manual, from 'Introduction'",
             "/usr/share/info/gettext.info.gz", r"^1 Introduction\n", "technical"),
    Document("tinystories", "TinyStories-style sample (in-distribution for stories260K)",
             "tinystories_sample.txt", None, "fiction"),
    # ---- more windows for statistical power (python -m kvmerge.eval --docs ...; POWER_DOCS)
    *[Document(f"pride_ch{n}", f"Pride and Prejudice, from Chapter {n} (Austen)",
               "pride_and_prejudice.txt", rf"^Chapter {n}\n", "fiction")
      for n in (10, 20, 27, 42, 50, 57)],
    *[Document(f"devils_{w.lower()}", f"The Devil's Dictionary, from '{w}' (Bierce)",
               "devils_dictionary.txt", rf"^{w}, n\.", "dictionary")
      for w in ("DEBT", "HAND", "OCEAN", "SAINT")],
    Document("gpl2", "GNU General Public License v2", "/usr/share/common-licenses/GPL-2",
             None, "legal"),
    Document("sed_intro", "GNU sed manual, from 'Introduction'", "/usr/share/info/sed.info.gz",
             r"^1 Introduction\n", "technical"),
    Document("grep_intro", "GNU grep manual, from 'Introduction'", "/usr/share/info/grep.info.gz",
             r"^1 Introduction\n", "technical"),
    Document("gnucobol_start", "GnuCOBOL manual, from 'Getting started'",
             "/usr/share/info/gnucobol.info.gz", r"^1 Getting started\n", "technical"),
    Document("wget_overview", "GNU Wget manual, from 'Overview'", "/usr/share/info/wget.info.gz",
             r"^1 Overview\n", "technical"),
    Document("diffutils_intro", "GNU diffutils manual, from 'What Comparison Means'",
             "/usr/share/info/diffutils.info.gz", r"^1 What Comparison Means\n", "technical"),
    Document("coreutils_ls", "GNU Coreutils manual, from 'ls invocation'",
             "/usr/share/info/coreutils.info.gz", r"^10\.1 .ls.: List directory contents",
             "technical"),
    Document("gettext_po", "GNU gettext manual, from 'The Format of PO Files'",
             "/usr/share/info/gettext.info.gz", r"^3 The Format of PO Files\n", "technical"),
    Document("nettle_intro", "Nettle manual, from 'Introduction'", "/usr/share/info/nettle.info.gz",
             r"^1 Introduction\n", "technical"),
    Document("ed_overview", "GNU ed manual, from 'Overview'", "/usr/share/info/ed.info.gz",
             r"^1 Overview\n", "technical"),
]}

#: documents of the full (SmolLM2) evaluation: fiction, satire, legal, technical
EVAL_DOCS = ["pride_ch1", "pride_ch34", "devils_dictionary", "devils_magic", "gpl3", "gfdl13",
             "coreutils_sort", "gettext_intro"]
#: more windows (not overlapping EVAL_DOCS, each other, or the calibration text ``lgpl21``) to
#: score more tokens for the top policies; ordered so that a prefix of the list mixes the kinds
POWER_DOCS = ["sed_intro", "pride_ch10", "devils_debt", "gpl2", "grep_intro", "pride_ch20",
              "devils_ocean", "wget_overview", "pride_ch42", "devils_saint", "gnucobol_start",
              "coreutils_ls", "pride_ch50", "gettext_po", "diffutils_intro", "pride_ch27",
              "devils_hand", "nettle_intro", "ed_overview", "pride_ch57"]
#: calibration text of the per-layer budgets (never evaluated)
CALIB_DOC = "lgpl21"
#: documents of the --quick (stories260K) evaluation
QUICK_DOCS = ["tinystories", "pride_ch1"]


def list_documents(available_only: bool = True) -> list[str]:
    """Names of the known documents (by default only those whose file exists)."""
    return [n for n, d in DOCUMENTS.items() if not available_only or d.resolve().is_file()]


def _read(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    text = text.replace("\r\n", "\n").replace("\x1f", "").replace("\x7f", "")
    # info files: drop the "File: ..., Node: ..." navigation lines
    text = re.sub(r"^File: [^\n]*Node: [^\n]*\n", "", text, flags=re.M)
    return text


def load_text(name: str) -> str:
    """The document's text from its start marker to the end of the file."""
    if name not in DOCUMENTS:
        raise ValueError(f"name: unknown document {name!r}; known: {sorted(DOCUMENTS)}")
    d = DOCUMENTS[name]
    p = d.resolve()
    if not p.is_file():
        raise FileNotFoundError(f"{name}: {p} not found")
    text = _read(p)
    if d.start:
        m = re.search(d.start, text, flags=re.M)
        if m is None:
            raise ValueError(f"name: start marker {d.start!r} not found in {p}")
        text = text[m.start():]
    return text


def load_tokens(name: str, tokenizer, n_tokens: int, *, bos: Optional[bool] = None) -> list[int]:
    """First ``n_tokens`` tokens of document ``name`` (deterministic).

    Tokenises a growing character window (8 chars/token first) so long books are not
    tokenised whole.  Raises ``ValueError`` if the document is too short.
    """
    text = load_text(name)
    n_chars = max(256, 8 * n_tokens)
    while True:
        chunk = text[:n_chars]
        kw = {} if bos is None else {"bos": bos}
        ids = list(tokenizer.encode(chunk, **kw))
        # drop the last few tokens: a cut word may tokenise differently
        if len(ids) >= n_tokens + 8 or n_chars >= len(text):
            break
        n_chars *= 2
    if len(ids) < n_tokens:
        raise ValueError(f"n_tokens: document {name!r} has only {len(ids)} tokens")
    return ids[:n_tokens]


def char_span(name: str, n_chars: int = 12000) -> tuple:
    """``(file, start, start + n_chars)``: where document ``name`` starts in its (decoded) file --
    to check that windows of different documents do not overlap (a window of 2305 SmolLM2 tokens
    is under 12 000 characters of English prose or technical text)."""
    d = DOCUMENTS[name]
    p = d.resolve()
    text = _read(p)
    start = 0
    if d.start:
        m = re.search(d.start, text, flags=re.M)
        if m is None:
            raise ValueError(f"name: start marker {d.start!r} not found in {p}")
        start = m.start()
    return (str(p), start, start + n_chars)
