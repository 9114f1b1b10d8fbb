"""The lab's documents: local files, chunked and stored in DuckDB, searched with BM25 (bm25s).

What workflow ``file_search`` nodes and agents' file search tools read offline, in place of
OpenAI vector stores (DuckDB's fts extension cannot be installed here). With an ``embedder``
(the lab's provider, when it has embeddings) the BM25 candidates are re-ranked by cosine
similarity of embeddings, which are stored beside the chunks.

The documents belong to the lab (its knowledge base), not to one user: every user's workflow
searches the same ones, and each row records who added it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ChatLabError
from .store.database import Database
from .store.items import utc_now

log = logging.getLogger("chatkit_lab")
CHUNK_CHARS = 800
OVERLAP_CHARS = 120
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".csv", ".json", ".jsonl", ".html", ".htm", ".xml", ".yaml", ".yml", ".py", ".ts", ".js"}
Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass(frozen=True)
class Hit:
    """One chunk a search found: where it is from, its text and score."""

    document_id: str
    filename: str
    chunk_index: int
    text: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "filename": self.filename, "chunk_index": self.chunk_index, "text": self.text,
                "score": round(self.score, 4)}


def chunks(text: str, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """Paragraph-aligned pieces of about ``size`` characters; each after the first starts with the
    last words (about ``overlap`` characters) of the one before, so an answer cut in two is found."""
    words = [w for paragraph in re.split(r"\n\s*\n", text) if paragraph.strip() for w in [*paragraph.split(), "\n\n"]]
    pieces: list[list[str]] = [[]]
    length = 0
    for word in words:
        if length + len(word) > size and pieces[-1] and word != "\n\n":
            tail: list[str] = []
            kept = 0
            for previous in reversed(pieces[-1]):
                if kept + len(previous) > overlap:
                    break
                tail.insert(0, previous)
                kept += len(previous) + 1
            pieces.append([w for w in tail if w != "\n\n"])
            length = kept
        pieces[-1].append(word)
        length += len(word) + 1
    return [re.sub(r" ?\n\n ?", "\n\n", " ".join(p)).strip() for p in pieces if any(w != "\n\n" for w in p)]


class Documents:
    """``lab.documents``: ``add(paths)``, ``search(query, k)``, ``df()``, ``remove(document_id)``."""

    def __init__(self, db: Database, run: Callable[[Any], Any], *, user_id: Callable[[], str], embedder: Embedder | None = None) -> None:
        self.db, self._run, self._user_id, self.embedder = db, run, user_id, embedder
        self._index: Any = None
        self._indexed_generation = -1
        self._rows: list[tuple[str, str, int, str]] = []
        self._generation = 0
        self._seen: Any = None  # (documents, newest added) when last indexed

    # -- adding ------------------------------------------------------------------------------
    def add(self, paths: str | Path | Iterable[str | Path]) -> Any:
        """Add files (or every text file under a folder); returns their rows. A file already added
        with the same content is skipped; a changed file replaces its old version."""
        targets = [paths] if isinstance(paths, str | Path) else list(paths)
        files: list[Path] = []
        for target in (Path(t).expanduser() for t in targets):
            if target.is_dir():
                found = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
                if not found:  # a wrong folder (or PDFs only) added nothing, silently
                    raise ChatLabError(f"There is no text file under {str(target)!r} to add (it takes {', '.join(sorted(TEXT_SUFFIXES))}).")
                files += found
            elif target.is_file():
                files.append(target)
            else:
                raise ChatLabError(f"There is no file or folder {str(target)!r} to add.")
        texts = []
        for path in files:
            try:
                texts.append((path, path.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                raise ChatLabError(f"{path.name} is not UTF-8 text; add text files (.txt, .md, .csv, .json, …).") from None
        return self._run(self._add(texts))

    def add_text(self, filename: str, text: str) -> Any:
        """Add ``text`` as a document named ``filename``."""
        return self._run(self._add([(Path(filename), text)]))

    async def _add(self, texts: Sequence[tuple[Path, str]]) -> Any:
        ids = []
        for path, text in texts:
            digest = hashlib.sha256(text.encode()).hexdigest()
            pieces = chunks(text)
            vectors = await self._embedded(pieces, path.name)
            async with self.db.transaction() as cur:
                same = cur.execute("SELECT document_id FROM documents WHERE path = ? AND content_hash = ?", [str(path), digest]).fetchone()
                if same:
                    ids.append(same[0])
                    continue
                old = cur.execute("SELECT document_id FROM documents WHERE path = ?", [str(path)]).fetchall()
                for (document_id,) in old:
                    cur.execute("DELETE FROM document_chunks WHERE document_id = ?", [document_id])
                    cur.execute("DELETE FROM documents WHERE document_id = ?", [document_id])
                document_id = f"doc_{uuid.uuid4().hex}"
                cur.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [document_id, path.name, str(path), digest, len(text), self._user_id(), utc_now()])
                for i, piece in enumerate(pieces):
                    cur.execute("INSERT INTO document_chunks VALUES (?, ?, ?, ?)", [document_id, i, piece, vectors[i] if vectors else None])
            ids.append(document_id)
        self._generation += 1
        return self.df(ids)

    async def _embedded(self, pieces: list[str], name: str) -> list[list[float]] | None:
        """The chunks' embeddings, or None: without them BM25 alone ranks, so a provider that
        cannot embed (no key, no such model) costs the re-ranking, not the document."""
        if self.embedder is None or not pieces:
            return None
        try:
            return await self.embedder(pieces)
        except Exception as exc:
            log.warning("%s is stored without embeddings (BM25 ranks it alone): %s: %s", name, type(exc).__name__, exc)
            return None

    def remove(self, document_id: str) -> None:
        self._run(self._remove(document_id))

    async def _remove(self, document_id: str) -> None:
        async with self.db.transaction() as cur:
            cur.execute("DELETE FROM document_chunks WHERE document_id = ?", [document_id])
            cur.execute("DELETE FROM documents WHERE document_id = ?", [document_id])
        self._generation += 1

    def df(self, ids: Sequence[str] | None = None) -> Any:
        """One row per document: id, filename, path, characters, chunks, who added it and when."""
        where = "WHERE d.document_id IN (SELECT unnest(?::VARCHAR[]))" if ids is not None else ""
        with self.db.cursor(invalidate=False) as cur:
            return cur.execute(
                f"""SELECT d.document_id, d.filename, d.path, d.chars, count(c.chunk_index) AS chunks, d.added_by, d.added_at
                    FROM documents d LEFT JOIN document_chunks c USING (document_id) {where}
                    GROUP BY d.document_id, d.filename, d.path, d.chars, d.added_by, d.added_at ORDER BY d.added_at, d.filename""", [list(ids)] if ids is not None else []).df()

    # -- searching ---------------------------------------------------------------------------
    def search(self, query: str, k: int = 5) -> list[Hit]:
        result: list[Hit] = self._run(self.asearch(query, k))
        return result

    async def asearch(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best chunks for ``query``: BM25, re-ranked by embeddings when there is an embedder."""
        index, rows = await self._bm25()
        if index is None or not query.strip():
            return []
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", stemmer=_stemmer(), show_progress=False, return_ids=False)
        found, scores = index.retrieve(tokens, k=min(len(rows), max(k, 1) * (4 if self.embedder else 1)), show_progress=False)
        candidates = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0]
        if self.embedder is not None and candidates:
            try:
                candidates = await self._rerank(query, candidates, rows)
            except Exception as exc:
                log.warning("search is ranked by BM25 alone: the embedder failed: %s: %s", type(exc).__name__, exc)
        return [Hit(rows[i][0], rows[i][1], rows[i][2], rows[i][3], score) for i, score in candidates[:k]]

    async def _rerank(self, query: str, candidates: list[tuple[int, float]], rows: list[tuple[str, str, int, str]]) -> list[tuple[int, float]]:
        assert self.embedder is not None
        (vector,) = await self.embedder([query])
        async with self.db.acursor() as cur:
            stored = {(d, n): e for d, n, e in cur.execute(
                "SELECT document_id, chunk_index, embedding FROM document_chunks WHERE document_id IN (SELECT unnest(?::VARCHAR[]))",
                [sorted({rows[i][0] for i, _ in candidates})]).fetchall()}
        scored = [(i, _cosine(vector, stored.get((rows[i][0], rows[i][2])))) for i, _ in candidates]
        return sorted(scored, key=lambda pair: -pair[1])

    async def _bm25(self) -> tuple[Any, list[tuple[str, str, int, str]]]:
        async with self.db.acursor() as cur:  # another kernel on the database may have added or removed some
            seen = cur.execute("SELECT count(*), max(added_at) FROM documents").fetchone()
        if seen != self._seen:
            self._seen = seen
            self._generation += 1
        if self._indexed_generation != self._generation:
            async with self.db.acursor() as cur:
                rows = cur.execute("SELECT c.document_id, d.filename, c.chunk_index, c.text FROM document_chunks c JOIN documents d USING (document_id) "
                                   "ORDER BY d.added_at, c.document_id, c.chunk_index").fetchall()
            self._rows = [(str(a), str(b), int(c), str(d)) for a, b, c, d in rows]
            self._index = await asyncio.to_thread(_index, [r[3] for r in self._rows]) if self._rows else None
            self._indexed_generation = self._generation
        return self._index, self._rows

    def changed(self) -> None:
        """Another process (or a merge) changed the tables: index again on the next search."""
        self._generation += 1

    # -- as an agent tool --------------------------------------------------------------------
    def as_tool(self, max_results: int = 5) -> Any:
        """A ``file_search`` function tool over these documents (what a hosted FileSearchTool becomes offline)."""
        from agents import function_tool

        async def file_search(query: str) -> str:
            """Search the lab's documents; returns the best matching excerpts with their file names."""
            hits = await self.asearch(query, max_results)
            return "\n\n".join(f"[{h.filename}] {h.text}" for h in hits) or "No document matches."

        return function_tool(file_search)


def _index(texts: list[str]) -> Any:
    import bm25s

    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False), show_progress=False)
    return index


_STEMMER: Any = None


def _stemmer() -> Any:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    return _STEMMER


def openai_embedder(client: Callable[[], Any], model: str = "text-embedding-3-small") -> Embedder:
    """Embeddings from an OpenAI(-compatible) client, made on first use (``client()``), for
    ``Documents(embedder=...)``."""
    made: list[Any] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        if not made:
            made.append(client())
        reply = await made[0].embeddings.create(model=model, input=texts)
        return [list(d.embedding) for d in reply.data]

    return embed


def _cosine(a: Sequence[float], b: Sequence[float] | None) -> float:
    if b is None or len(b) == 0:
        return 0.0
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / norm) if norm else 0.0
