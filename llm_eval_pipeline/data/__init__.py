"""Labelled data shipped with the package, written for this project.

``faithfulness/part_*.jsonl``: answers to questions over short passages, each labelled
``faithful`` (every claim supported by the passage) or ``fabricated``; fields ``id``,
``question``, ``context``, ``reference`` (null in reference-free rows), ``answer``,
``label``, and in parts a and b ``group`` (one question's answers) and ``kind`` (how the
answer is right or wrong: a paraphrase, a relation swap, a flipped comparison, an
attribute moved to another entity of the passage, ...). Part 0 (92 rows) is the first
set; part a (science, nature, geography, technology) and part b (history, arts, sports,
business) came later, each question with faithful and fabricated answers, short and
sentence-long on both sides. Parts c (film, music, literature, sport) and d (politics,
history, science, companies) are multi-hop: two or three encyclopedia-style paragraphs
about fictional entities linked by a bridge entity ("where was the star of F born?") or
compared ("which was founded first, X or Y?"), each question with a short and a
sentence-long faithful answer, a fabricated sentence that reuses the passage's names in
a wrong relation or with another entity's attribute, and a short wrong entity.

Every question group falls in one of two parts by a hash of its name: ``dev`` (about
60%, and all of part 0, which earlier work looked at) is where the hallucination
calibration is fitted; ``test`` is scored only to report how the shipped metric does.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path

FAITHFULNESS_PARTS = ("part_0", "part_a", "part_b", "part_c", "part_d")
DEV, TEST = "dev", "test"
DEV_SHARE = 0.6
FABRICATED = "fabricated"
"""The label of the positive class: the answers a hallucination score should rank high."""


def faithfulness_parts() -> list[Path]:
    """The labelled files, in order."""
    folder = Path(str(files(__package__) / "faithfulness"))
    return [folder / f"{name}.jsonl" for name in FAITHFULNESS_PARTS]


def group_of(row: dict) -> str:
    """A row's question group: its ``group``, else its question."""
    return str(row.get("group") or row["question"])


def split_of(group: str, part: str) -> str:
    """``dev`` or ``test`` for a question group of ``part`` (part 0 is all ``dev``)."""
    if part == FAITHFULNESS_PARTS[0]:
        return DEV
    bucket = int.from_bytes(hashlib.sha256(group.encode("utf-8")).digest()[:4], "big")
    return DEV if bucket / 2**32 < DEV_SHARE else TEST


def labelled_rows(split: str | None = None) -> list[dict]:
    """The labelled rows of ``split`` (``dev``, ``test``, or None for all), each with its
    ``group`` and ``split`` set."""
    rows = []
    for path in faithfulness_parts():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            row["group"] = group_of(row)
            row["split"] = split_of(row["group"], path.stem)
            if split is None or row["split"] == split:
                rows.append(row)
    return rows
