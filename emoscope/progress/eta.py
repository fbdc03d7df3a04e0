"""How long a training run has left, from measured throughput × the work its plan has left.

The plan (the ``plan`` event) says the work: per stage-1 model its training texts × the epochs
allowed, the validation texts read after each epoch, the texts stage 2 reads per encoder, and
the meta-learner's epochs over the training texts. Each stage's speed is measured as soon as it
runs — stage 1 from the first batch tick (texts per second of training), then from finished
epochs (which include validation); stage 2 from texts embedded per second (model loading
included); stage 3 from its batches and epochs. A stage not reached yet borrows the speed of
the one before it through a fixed ratio (below), so the ETA exists from the first batch of the
run, a second or two in, and corrects itself as each stage is measured.

Early stopping can only end a model sooner, and the embedding cache can only save work, so the
figure is an upper bound that shrinks; stage 2 assumes the cache will serve the texts still to
read in the same proportion as it served those read so far.
"""

from __future__ import annotations

import math

from emoscope.progress.state import RunState

# A text read once (stage 2, or stage 1's per-epoch validation) against a text trained on once
# (forward, backward and optimiser step, at training padding). The FLOP ratio is about 3; the
# `default` recipe measured 8.7 (826 s for 7,749 training texts, 388 s for 31,761 reads);
# 6 keeps the first estimate on the safe side of both.
READ_SPEEDUP = 6.0
# A text through the meta-learner for one epoch (its Bi-LSTM over cached word vectors) against a
# text read by an encoder in stage 2: `default` measured about 7 (276 s for 20 epochs over 7,749
# texts against 82 texts/s embedded).
META_SPEEDUP = 5.0


def _rate(texts: float, seconds: float) -> float | None:
    """Seconds per text, when at least one text took measurable time."""
    return seconds / texts if texts > 0 and seconds > 0 else None


def _stage1_left(state: RunState) -> tuple[float, int]:
    """(training texts × epochs still to train, epochs still to run) over every stage-1 model."""
    plan = state.plan or {}
    epochs = int(plan.get("epochs") or 0)
    texts_left, epochs_left = 0.0, 0
    current = state.model
    for model in plan.get("models") or []:
        key = (model["encoder"], model["role"])
        if key in state.finished:
            continue
        texts = float(model["texts"])
        if current is not None and (current.get("encoder"), current.get("role")) == key:
            texts = float(current.get("texts", texts))
            run = sum(1 for e in state.stage_epochs("fine-tune") if (e.get("encoder"), e.get("role")) == key)
            in_epoch = state.batch["texts"] if state.batch and state.batch.get("stage") == "fine-tune" else 0
            texts_left += max(0, epochs - run) * texts - in_epoch
            epochs_left += max(0, epochs - run)
        else:
            texts_left += epochs * texts
            epochs_left += epochs
    return max(texts_left, 0.0), epochs_left


def _stage1_rate(state: RunState) -> tuple[float | None, float | None]:
    """(seconds per training text of a whole epoch, validation included; seconds per text of the
    training batches alone): the first from finished epochs, the second from the last tick."""
    epochs = state.stage_epochs("fine-tune")
    per_epoch = _rate(sum(float(e.get("texts", 0)) for e in epochs), sum(float(e.get("seconds", 0)) for e in epochs))
    batch = state.batch if state.batch and state.batch.get("stage") == "fine-tune" else None
    per_batch = _rate(float(batch["texts"]), float(batch["seconds"])) if batch else None
    return per_epoch, per_batch


def _stage1_seconds(state: RunState) -> tuple[float | None, float | None]:
    """(seconds stage 1 has left, seconds per text read by an encoder as stage 1 measured it)."""
    texts_left, epochs_left = _stage1_left(state)
    per_epoch, per_batch = _stage1_rate(state)
    per_train = per_batch if per_epoch is None else per_epoch
    per_read = None if per_train is None else per_train / READ_SPEEDUP
    if texts_left == 0:
        return 0.0, per_read
    if per_epoch is not None:
        return texts_left * per_epoch, per_read
    if per_batch is not None:
        validation = float((state.plan or {}).get("texts", {}).get("validation", 0))
        return texts_left * per_batch + epochs_left * validation * per_batch / READ_SPEEDUP, per_read
    return None, None


def _stage2_seconds(state: RunState, per_read: float | None) -> tuple[float | None, float | None]:
    """(seconds stage 2 has left, seconds per text read as measured there or borrowed)."""
    planned = sum(r.planned for r in state.reads.values())
    finished = sum(r.texts for r in state.reads.values())
    computed = float(sum(r.texts - r.cached for r in state.reads.values()))
    seconds = sum(r.seconds for r in state.reads.values())
    current_left, current_texts = 0.0, 0
    if state.reading is not None:
        current_texts = int(state.reading.get("texts", 0))
        current_left = float(current_texts)  # until its first tick, as if none were cached
    tick = state.embed_tick if state.reading is not None else None
    if tick is not None:  # shortest texts come first: the share of tokens done says how far along
        share = tick["tokens"] / tick["tokens_total"] if tick.get("tokens_total") else tick["done"] / max(tick["total"], 1)
        computed += tick["total"] * share
        seconds += float(tick.get("seconds", 0.0))
        current_left = tick["total"] * (1.0 - share)
    measured = _rate(computed, seconds)
    per_read = measured if measured is not None else per_read
    future = max(0, planned - finished - current_texts)
    if future == 0 and current_left == 0:
        return 0.0, per_read
    if per_read is None:
        return None, None
    from_cache = sum(r.cached for r in state.reads.values()) / finished if finished else 0.0
    return (current_left + future * (1.0 - from_cache)) * per_read, per_read


def _stage3_seconds(state: RunState, per_read: float | None) -> float | None:
    plan = state.plan or {}
    epochs = state.stage_epochs("meta")
    left = max(0, int(plan.get("meta_epochs") or 0) - len(epochs))
    if left == 0:
        return 0.0
    texts = float(plan.get("texts", {}).get("train", 0))
    per_text = _rate(sum(float(e.get("texts", 0)) for e in epochs), sum(float(e.get("seconds", 0)) for e in epochs))
    batch = state.batch if state.batch and state.batch.get("stage") == "meta" else None
    if per_text is None and batch is not None:
        per_text = _rate(float(batch["texts"]), float(batch["seconds"]))
    if per_text is None and per_read is not None:
        per_text = per_read / META_SPEEDUP
    if per_text is None:
        return None
    in_epoch = float(batch["texts"]) if batch is not None else 0.0
    return max(0.0, left * texts - in_epoch) * per_text


def eta_seconds(state: RunState, now: float | None = None) -> float | None:
    """Seconds the run has left (0 once done; None before anything has been measured, or when the
    run failed). ``now`` (Unix time) counts down from the last event."""
    if state.done is not None:
        return 0.0
    if state.failed is not None or state.plan is None:
        return None
    stages = state.plan.get("stages") or ["fine-tune"]
    order = {name: i for i, name in enumerate(stages)}
    at = -1 if state.stage is None else order.get(state.stage, len(stages))  # "finish": past every stage
    stage1, per_read = _stage1_seconds(state)
    stage2, per_read = _stage2_seconds(state, per_read) if "embed" in order else (0.0, per_read)
    stage3 = _stage3_seconds(state, per_read) if "meta" in order else 0.0
    # A stage already passed has nothing left, whatever its counts say (early stop, reuse, dedup).
    stage1, stage2, stage3 = (0.0 if name in order and at > order[name] else value
                              for name, value in (("fine-tune", stage1), ("embed", stage2), ("meta", stage3)))
    parts = (stage1, stage2, stage3)
    if any(p is None for p in parts):
        return None
    total = float(sum(parts))
    if now is not None and state.updated is not None:
        total -= max(0.0, now - state.updated)
    return max(total, 0.0)


def format_eta(seconds: float | None) -> str:
    """``about 14 min left`` / ``about 1 h 05 min left`` / ``under a minute left`` (empty for None)."""
    if seconds is None or math.isnan(seconds):
        return ""
    if seconds < 60:
        return "under a minute left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"
