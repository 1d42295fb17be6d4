"""The knowledge source FActScore retrieves from: a topic's article split into passages, and BM25
over them.

An article comes from a JSONL of ``{"title", "text"}`` or from FActScore's SQLite layout
(``documents(title, text)``, passages joined by ``SQLITE_SEPARATOR``). Passages are at most
``max_words`` words; BM25 (``bm25s``) lowercases, drops English stop words, keeps one-character
tokens (digits, initials) and does not stem. The query is the fact preceded by the topic's
words it lacks (:func:`retrieval_query`), so the entity's name does not count twice.
"""
import re
import sqlite3
from typing import Dict, Iterable, List, Optional, Tuple

from maskdpo_xtuner.io.validate import RecordError, iter_lines
from maskdpo_xtuner.annotate.split import split_sentences

SQLITE_SEPARATOR = '####SPECIAL####SEPARATOR####'


def split_passages(texts, max_words: int = 256) -> List[str]:
    """Pack the sentences of each text unit into passages of at most ``max_words`` words."""
    if isinstance(texts, str):
        texts = [texts]
    out = []
    for text in texts:
        cur: List[str] = []
        for sent in split_sentences(text, 'en'):
            words = sent.text.split()
            if cur and len(cur) + len(words) > max_words:
                out.append(' '.join(cur))
                cur = []
            while len(words) > max_words:  # only a sentence longer than a passage is cut
                out.append(' '.join(words[:max_words]))
                words = words[max_words:]
            cur += words
        if cur:
            out.append(' '.join(cur))
    return out


def _tokenize(texts: List[str]) -> List[List[str]]:
    """Lowercase word tokens without English stop words; one-character tokens (digits,
    initials) are kept, unlike bm25s's default pattern."""
    import bm25s
    return bm25s.tokenize(texts, lower=True, stopwords='en', return_ids=False,
                          show_progress=False, token_pattern=r'(?u)\b\w+\b')


def retrieval_query(topic: str, fact: str) -> str:
    """The BM25 query for a fact: the fact, preceded by the words of the topic it does not
    already contain (facts usually name the entity; counting its name twice would rank
    passages that only mention the name above the evidence)."""
    have = set(re.findall(r'\w+', fact.lower()))
    missing = [w for w in topic.split() if not set(re.findall(r'\w+', w.lower())) <= have]
    return ' '.join(missing + [fact])


def _check_article(rec) -> Tuple[str, object]:
    """(title, text) of one JSONL knowledge record: a string title, a string or string list."""
    if isinstance(rec, RecordError):
        raise rec
    if not isinstance(rec, dict):
        raise RecordError('not_an_object', '<line>', 'expected {"title", "text"}')
    for key in ('title', 'text'):
        if key not in rec:
            raise RecordError('missing_field', key, 'missing: a knowledge record needs "title" '
                              'and "text"')
    title, text = rec['title'], rec['text']
    if not isinstance(title, str):
        raise RecordError('bad_type', 'title', f'expected a string, got {type(title).__name__}')
    if not isinstance(text, str) and not (isinstance(text, list)
                                          and all(isinstance(t, str) for t in text)):
        raise RecordError('bad_type', 'text', 'expected a string or a list of strings, got '
                          f'{type(text).__name__}')
    return title, text


class KnowledgeSource:
    """Passages per topic title from a JSONL or FActScore-layout SQLite file (see module doc).

    ``topics``: with a JSONL file, keep only these titles in memory (a SQLite file is read
    lazily anyway).
    """

    def __init__(self, path: str, passage_words: int = 256,
                 topics: Optional[Iterable[str]] = None):
        self.path, self.passage_words = path, passage_words
        self._units: Dict[str, List[str]] = {}
        self._db = None
        self._cache: Dict[str, Tuple[List[str], object]] = {}
        if self._is_sqlite(path):
            self._db = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
            try:  # checks the layout
                self._db.execute('SELECT title, text FROM documents LIMIT 1')
            except sqlite3.DatabaseError as e:
                raise ValueError(f'{path}: not a knowledge database in FActScore\'s layout (a '
                                 f'table documents(title, text)): {e}') from None
        elif path.endswith('.db'):
            raise ValueError(f'{path}: not a SQLite database (FActScore\'s layout); a JSON Lines '
                             'knowledge file must end in .jsonl')
        else:
            wanted = None if topics is None else set(topics)
            for i, rec in iter_lines(path):
                try:
                    title, text = _check_article(rec)
                except RecordError as err:
                    raise err.at(path, i) from None
                if wanted is None or title in wanted:
                    self._units.setdefault(title, []).extend(
                        [text] if isinstance(text, str) else text)

    @staticmethod
    def _is_sqlite(path: str) -> bool:
        try:
            with open(path, 'rb') as f:
                return f.read(16) == b'SQLite format 3\x00'
        except IsADirectoryError:
            return False

    def _lookup(self, topic: str) -> Optional[List[str]]:
        if self._db is None:
            return self._units.get(topic)
        row = self._db.execute('SELECT text FROM documents WHERE title = ?',
                               (topic,)).fetchone()
        if row is None:
            return None
        units = [p.replace('<s>', '').replace('</s>', '').strip()
                 for p in row[0].split(SQLITE_SEPARATOR)]
        return [u for u in units if u]

    def __contains__(self, topic: str) -> bool:
        return topic in self._cache or self._lookup(topic) is not None

    def _entry(self, topic: str):
        if topic not in self._cache:
            units = self._lookup(topic)
            if units is None:
                raise KeyError(f'topic {topic!r} is not a title in {self.path}')
            passages = split_passages(units, self.passage_words)
            index = None
            if passages:
                import bm25s
                index = bm25s.BM25()
                index.index(_tokenize(passages), show_progress=False)
            self._cache[topic] = (passages, index)
        return self._cache[topic]

    def passages(self, topic: str) -> List[str]:
        return self._entry(topic)[0]

    def retrieve(self, topic: str, query: str, k: int = 5) -> List[Tuple[int, float]]:
        """The ``k`` best passages of ``topic`` for ``query`` as ``(passage index, BM25
        score)``, best first; ties keep article order."""
        passages, index = self._entry(topic)
        if not passages:
            return []
        tokens = _tokenize([query])[0]
        scores = index.get_scores(tokens) if tokens else [0.0] * len(passages)
        order = sorted(range(len(passages)), key=lambda i: (-float(scores[i]), i))[:k]
        return [(i, float(scores[i])) for i in order]
