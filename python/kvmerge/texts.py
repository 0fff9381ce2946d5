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

__all__ = ["Document", "DOCUMENTS", "EVAL_DOCS", "QUICK_DOCS", "texts_dir", "list_documents",
           "load_text", "load_tokens"]


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
]}

#: documents of the full (SmolLM2) evaluation: fiction, satire, legal, technical
EVAL_DOCS = ["pride_ch1", "pride_ch34", "devils_dictionary", "devils_magic", "gpl3", "gfdl13",
             "coreutils_sort", "gettext_intro"]
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
