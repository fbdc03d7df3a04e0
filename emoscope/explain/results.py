"""What an explanation holds: per explained label its probability and one score per word of the
text as typed, the method and its resolved parameters, runtime and diagnostics; JSON both ways.
An estimate of a progressive method (or a stopped run) is marked ``partial``, with ``progress``:
how many samples or steps of how many it rests on (both only in the JSON of a partial one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emoscope.text import Word


@dataclass
class LabelExplanation:
    label: str
    probability: float
    scores: list[float]  # one per word of Explanation.words

    def top(self, k: int, words: Sequence[Word]) -> list[tuple[str, float]]:
        order = np.argsort(-np.asarray(self.scores), stable=True)[:k]
        return [(words[i].text, float(self.scores[i])) for i in order]


@dataclass
class Explanation:
    """Scores per word of ``text`` for each explained label, and how they were obtained."""

    text: str
    words: list[Word]
    method: str
    params: dict[str, Any]
    labels: dict[str, LabelExplanation]
    runtime_s: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    partial: bool = False
    progress: dict[str, Any] | None = None  # {"done": n, "total": N, "unit": "samples" | "steps"} of a partial one

    def scores(self, label: str) -> np.ndarray:
        return np.asarray(self.labels[label].scores, dtype=float)

    def to_json(self) -> dict[str, Any]:
        raw = {
            "text": self.text,
            "words": [{"text": w.text, "start": w.start, "end": w.end} for w in self.words],
            "method": self.method,
            "params": self.params,
            "labels": {name: {"probability": e.probability, "scores": e.scores,
                              "top": e.top(int(self.params.get("top_k", 5)), self.words)}
                       for name, e in self.labels.items()},
            "runtime_s": self.runtime_s,
            "diagnostics": self.diagnostics,
            "extra": self.extra,
        }
        if self.partial:  # a finished explanation's JSON is what it always was
            raw |= {"partial": True, "progress": self.progress}
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Explanation:
        words = [Word(w["text"], w["start"], w["end"]) for w in raw["words"]]
        labels = {name: LabelExplanation(name, float(e["probability"]), [float(x) for x in e["scores"]])
                  for name, e in raw["labels"].items()}
        return cls(raw["text"], words, raw["method"], dict(raw["params"]), labels, float(raw.get("runtime_s", 0.0)),
                   dict(raw.get("diagnostics", {})), dict(raw.get("extra", {})), bool(raw.get("partial", False)),
                   raw.get("progress"))
