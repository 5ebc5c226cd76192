"""Word count: map tasks count the words of text chunks, one reduce merges the counts."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from importlib import resources

from faasplan.workflow import Workflow, io, task
from faasplan.workloads._checks import positive_int

# Letters and digits, with inner apostrophes kept ("harbor's" is one word).
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def bundled_text() -> str:
    """The English text shipped with faasplan (about 6 KB), the default word-count input."""
    return resources.files("faasplan.workloads").joinpath("data", "harbor.txt").read_text(
        encoding="utf-8")


def split_text(text: str, chunks: int) -> list[str]:
    """Cut ``text`` into ``chunks`` pieces of similar length, only at whitespace.

    Joining the pieces gives back ``text``; a piece may be empty when the text is short.
    """
    cuts = [0]
    for i in range(1, chunks):
        pos = max(len(text) * i // chunks, cuts[-1])
        # Move forward to a whitespace so no word is cut in two.
        while pos < len(text) and not text[pos].isspace():
            pos += 1
        cuts.append(pos)
    cuts.append(len(text))
    return [text[lo:hi] for lo, hi in itertools.pairwise(cuts)]


# Vocabulary grows sublinearly with text length (Heaps' law), and so does the Counter's
# pickled size; exponent and coefficient measured on chunks of the bundled text.
@task(io=io.power(0.8, coefficient=4.5))
def count_words(chunk: str) -> Counter[str]:
    """Occurrences of each lower-cased word of ``chunk``."""
    return Counter(WORD.findall(chunk.lower()))


# The union of vocabularies is smaller than the sum of the parts: ratio fitted from runs.
@task(io=io.linear())
def merge_counts(partials: dict[str, Counter[str]]) -> Counter[str]:
    """Sum of the per-chunk counters."""
    total: Counter[str] = Counter()
    for counts in partials.values():
        total.update(counts)
    return total


def wordcount(chunks: int = 8, text: str | None = None) -> Workflow:
    """Map/reduce word count over ``chunks`` pieces of ``text``: ``chunks + 1`` tasks.

    Words are lower-cased runs of letters and digits, inner apostrophes included. The
    reduce takes its inputs as a ``dict`` from chunk name to map task. The sink returns a
    ``collections.Counter`` equal to the count over the whole text.

    Parameters
    ----------
    chunks : int
        Number of map tasks, >= 1.
    text : str, optional
        The text to count (default: :func:`bundled_text`).

    >>> from faasplan.workflow.local import run_local
    >>> run_local(wordcount(2, "the sea, the wind and the sea")).most_common(2)
    [('the', 3), ('sea', 2)]
    """
    positive_int("wordcount", "chunks", chunks)
    if text is None:
        text = bundled_text()
    elif not isinstance(text, str):
        raise ValueError(f"wordcount: text must be a str or None, got {type(text).__name__}")
    partials = {f"chunk-{i}": count_words(piece)
                for i, piece in enumerate(split_text(text, chunks))}
    return Workflow(merge_counts(partials), name="wordcount")
