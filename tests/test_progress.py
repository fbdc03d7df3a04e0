"""Progress of a training run: the reporter and its sinks, the state folded from events, the ETA
from measured throughput, and what ``emoscope train`` prints (stages 2 and 3 included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emoscope.errors import DataError
from emoscope.progress import (
    ConsoleSink,
    JsonLinesSink,
    Reporter,
    current,
    describe,
    eta_seconds,
    fold,
    format_eta,
    read_events,
    reporting,
)

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_ticks_are_thinned_but_the_last_of_a_pass_always_goes_out():
    seen, clock = [], Clock()
    reporter = Reporter(seen.append, interval=1.0, clock=clock)
    for done in range(1, 11):
        reporter.tick("batch", done, 10, texts=done * 4)
        clock.t += 0.3
    assert [e["done"] for e in seen] == [1, 5, 9, 10]
    assert all(e["event"] == "batch" and "t" in e for e in seen)


def test_without_a_reporter_nothing_is_sent_and_reporting_restores_the_previous_one():
    before = current()
    assert not before.sinks
    before.emit("plan", kind="x")  # a no-op, not an error
    seen = []
    with reporting(Reporter(seen.append)) as reporter:
        assert current() is reporter
        current().emit("stage", name="embed")
    assert current() is before and [e["name"] for e in seen] == ["embed"]


def test_a_failure_inside_reporting_becomes_one_failed_line(tmp_path):
    path = tmp_path / "events.jsonl"
    with pytest.raises(DataError), reporting(Reporter(JsonLinesSink(path))):
        raise DataError("the validation set x has no positive labels;\nearly stopping needs some")
    with pytest.raises(ZeroDivisionError), reporting(Reporter(JsonLinesSink(path))):
        raise ZeroDivisionError("division by zero")
    events = read_events(path)
    assert [e["reason"] for e in events] == ["the validation set x has no positive labels;",
                                             "ZeroDivisionError: division by zero"]


def test_read_events_skips_a_line_still_being_written(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"event": "plan", "t": 1}) + "\n" + '{"event": "ba', encoding="utf-8")
    assert [e["event"] for e in read_events(path)] == ["plan"]
    assert read_events(tmp_path / "missing.jsonl") == []


def _stack_plan(t=0.0, **extra):
    return {"event": "plan", "t": t, "kind": "stacked", "name": "s", "labels": ["a", "b"], "epochs": 2,
            "texts": {"train": 100, "validation": 20, "eval": 0}, "stages": ["fine-tune", "embed", "meta"],
            "encoders": [{"name": "ft", "fine_tune": True}, {"name": "fz", "fine_tune": False}], "folds": 2,
            "models": [{"encoder": "ft", "role": "full", "texts": 100}, {"encoder": "ft", "role": "fold-1", "texts": 50},
                       {"encoder": "ft", "role": "fold-2", "texts": 50}],
            "embed": {"ft": 220, "fz": 120}, "meta_epochs": 10, **extra}


def test_eta_exists_from_the_first_batch_and_follows_measured_throughput():
    events = [_stack_plan(0.0), {"event": "stage", "t": 1.0, "name": "fine-tune", "index": 1, "of": 3},
              {"event": "model", "t": 1.0, "encoder": "ft", "role": "full", "index": 1, "of": 3, "texts": 100}]
    assert eta_seconds(fold(events)) is None  # nothing measured yet: no guess
    # First batch: 10 texts in 2 s (0.2 s per text trained).
    events.append({"event": "batch", "t": 3.0, "done": 1, "total": 10, "texts": 10, "seconds": 2.0})
    state = fold(events)
    # stage 1: (2 * 100 - 10) + 2 * (2 * 50) = 390 text-epochs × 0.2 s, plus 6 validation passes of 20 texts at 0.2/6
    stage1 = 390 * 0.2 + 6 * 20 * 0.2 / 6
    per_read = 0.2 / 6
    stage2 = 340 * per_read
    stage3 = 10 * 100 * per_read / 5
    assert eta_seconds(state) == pytest.approx(stage1 + stage2 + stage3)
    # Between events the figure counts down with the clock.
    assert eta_seconds(state, now=13.0) == pytest.approx(stage1 + stage2 + stage3 - 10.0)


def test_finished_epochs_replace_the_batch_rate_and_early_stopping_drops_the_rest_of_a_model():
    events = [_stack_plan(), {"event": "stage", "t": 0, "name": "fine-tune"},
              {"event": "model", "t": 0, "encoder": "ft", "role": "full", "texts": 100},
              {"event": "epoch", "t": 30, "stage": "fine-tune", "epoch": 1, "epochs": 2, "texts": 100, "seconds": 30.0,
               "train_loss": 0.5, "val_macro_f1": 0.4, "val_f1": {"a": 0.3, "b": 0.5}},
              {"event": "model_done", "t": 30, "encoder": "ft", "role": "full"}]  # stopped early after 1 epoch
    state = fold(events)
    per_text = 0.3  # 30 s per 100 texts per epoch, validation included
    stage1 = 2 * 2 * 50 * per_text
    stage2 = 340 * per_text / 6
    assert eta_seconds(state) == pytest.approx(stage1 + stage2 + 10 * 100 * per_text / 6 / 5)
    assert "fine-tuning ft, full (all training texts) (model ? of ?)" in describe(state)


def test_stage_two_uses_its_own_speed_the_share_of_tokens_and_the_cache():
    events = [_stack_plan(), {"event": "stage", "t": 0, "name": "embed"},
              {"event": "embed_start", "t": 0, "encoder": "ft", "role": "fold-1", "split": "train", "texts": 50},
              {"event": "embedded", "t": 5, "encoder": "ft", "role": "fold-1", "split": "train", "texts": 50,
               "cached": 0, "seconds": 5.0},  # 0.1 s per text
              {"event": "embed_start", "t": 5, "encoder": "ft", "role": "fold-2", "split": "train", "texts": 50},
              {"event": "embed", "t": 6, "done": 25, "total": 50, "tokens": 250, "tokens_total": 1000, "seconds": 1.0}]
    state = fold(events)
    assert state.texts_read("ft") == 75 and state.texts_read("fz") == 0
    # measured: 50 texts in 5 s + a quarter of 50 (by tokens) in 1 s → 62.5 texts in 6 s
    per_read = 6.0 / 62.5
    left = 50 * 0.75 + (220 + 120 - 50 - 50)
    stage3 = 10 * 100 * per_read / 5
    assert eta_seconds(state) == pytest.approx(left * per_read + stage3)
    assert "embedding with ft (fold-2) → train" in describe(state)
    # A rerun whose reads all come from the cache expects the rest to come from it too.
    cached = fold([_stack_plan(), {"event": "stage", "t": 0, "name": "embed"},
                   {"event": "embedded", "t": 1, "encoder": "ft", "role": "full", "split": "train", "texts": 100,
                    "cached": 100, "seconds": 1.0}])
    assert eta_seconds(cached) is None  # nothing computed anywhere yet: no speed to go by


def test_meta_epochs_then_done():
    events = [_stack_plan(), {"event": "stage", "t": 0, "name": "meta", "index": 3, "of": 3}]
    events += [{"event": "epoch", "t": i, "stage": "meta", "epoch": i, "epochs": 10, "texts": 100, "seconds": 2.0,
                "train_loss": 1.0 / i, "val_macro_f1": 0.1 * i, "val_f1": {"a": 0.1, "b": 0.2}} for i in (1, 2)]
    state = fold(events)
    assert eta_seconds(state) == pytest.approx(8 * 2.0)
    assert describe(state) == "stage 3 of 3 · meta-learner · epoch 2/10"
    assert [e["series"] for e in state.epochs] == ["meta-learner", "meta-learner"]
    state.apply({"event": "done", "t": 30, "bundle": "x"})
    assert eta_seconds(state) == 0.0 and describe(state) == "done"
    state.apply({"event": "failed", "t": 31, "reason": "boom"})
    assert describe(fold([_stack_plan(), {"event": "failed", "t": 1, "reason": "boom"}])) == "failed: boom"


def test_format_eta():
    assert format_eta(None) == "" and format_eta(12) == "under a minute left"
    assert format_eta(14 * 60 + 10) == "about 14 min left" and format_eta(3900) == "about 1 h 05 min left"


def test_the_console_prints_stage_two_and_three_with_an_eta():
    lines, clock = [], Clock(0.0)
    sink = ConsoleSink(lines.append, interval=10.0, clock=clock)
    reporter = Reporter(sink, interval=0.0, clock=clock)
    for event in [_stack_plan(0.0), {"event": "stage", "t": 0, "name": "embed", "index": 2, "of": 3},
                  {"event": "embed_start", "t": 0, "encoder": "fz", "role": "pretrained", "split": "train", "texts": 100}]:
        reporter.emit(event.pop("event"), **{k: v for k, v in event.items() if k != "t"})
    for done in (10, 20, 100):
        clock.t += 6
        reporter.tick("embed", done, 100, tokens=done * 5, tokens_total=500, seconds=clock.t)
    reporter.emit("embedded", encoder="fz", role="pretrained", split="train", texts=100, cached=0, seconds=12.0)
    reporter.emit("stage", name="meta", index=3, of=3)
    reporter.emit("epoch", stage="meta", epoch=1, epochs=10, train_loss=0.7, val_macro_f1=0.25, seconds=1.5, texts=100)
    assert lines[0].startswith("[plan] stacked: ft (fine-tuned), fz (frozen)")
    assert lines[1].startswith("[stage 2 of 3] embedding")
    embedding = [line for line in lines if "texts embedded" in line]
    assert len(embedding) == 2 and "10/100 texts embedded" in embedding[0] and "min left" in embedding[0]
    assert "100/100" in embedding[1]  # 12 s after the first; the one 6 s after it was thinned out
    assert any(line.startswith("[stage 2] fz: 100 of 120 texts read") for line in lines)
    assert lines[-1].startswith("[stage 3] epoch 1/10: loss 0.7000 | val macro-F1 0.2500 | 1.5s")


def test_python_dash_m_emoscope_is_the_console_command():
    proc = subprocess.run([sys.executable, "-m", "emoscope", "--help"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0 and "usage: emoscope" in proc.stdout and "train" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "emoscope", "train", "--config", "/nonexistent.toml"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 2 and "recipe file not found" in proc.stderr


def stack_recipe(path: Path, tiny_encoder, tiny_encoder_b, tiny_data, *, name="tiny-stack", epochs=2, meta_epochs=4,
                 folds=2) -> Path:
    """A tiny stacked recipe: one encoder fine-tuned out-of-fold, one frozen."""
    path.write_text(f"""
name = "{name}"
[data]
train = "{tiny_data['train']}"
validation = "{tiny_data['dev']}"
[[encoders]]
name = "ft"
source = "{tiny_encoder}"
max_length = 32
[[encoders]]
name = "fz"
source = "{tiny_encoder_b}"
max_length = 32
fine_tune = false
[training]
lr = 3e-3
batch_size = 16
epochs = {epochs}
patience = {epochs}
[stack]
folds = {folds}
max_words = 16
[meta]
hidden_size = 16
dense_size = 16
epochs = {meta_epochs}
patience = {meta_epochs}
[loss]
name = "hybrid"
""", encoding="utf-8")
    return path


def test_emoscope_train_prints_every_stage_and_writes_the_events(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path,
                                                                 capsys, monkeypatch):
    from emoscope.cli import main

    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    recipe = stack_recipe(tmp_path / "s.toml", tiny_encoder, tiny_encoder_b, tiny_data)
    events = tmp_path / "run.events.jsonl"
    assert main(["train", "--config", str(recipe), "--output", str(tmp_path / "b"), "--quiet",
                 "--events", str(events)]) == 0
    out = capsys.readouterr().out
    assert "[plan] stacked: ft (fine-tuned), fz (frozen); stage 1: 3 model(s)" in out
    assert "[stage 1] model 2 of 3: ft, fold 1 of 2" in out
    assert "[stage 2] fz: 220 of 220 texts read" in out  # 160 train + 60 validation
    assert "[stage 3] epoch 4/4: loss" in out
    state = fold(read_events(events))
    assert state.done is not None and state.failed is None
    assert [(e["series"], e["epoch"]) for e in state.epochs][:2] == [("ft full", 1), ("ft full", 2)]
    assert [e["series"] for e in state.epochs].count("meta-learner") == 4
    assert set(state.epochs[0]["val_f1"]) == {"anger", "fear", "joy", "sadness"}
    assert state.texts_read("ft") == 2 * 160 + 60 and state.reads["ft"].planned == 2 * 160 + 60
    assert {(m["encoder"], m["role"]) for m in state.plan["models"]} == state.finished


def test_each_member_of_a_meta_learner_ensemble_has_its_own_curve():
    events = [_stack_plan(), {"event": "stage", "t": 0, "name": "meta", "index": 3, "of": 3}]
    events += [{"event": "epoch", "t": i, "stage": "meta", "member": m, "members": 2, "epoch": i, "epochs": 10,
                "texts": 100, "seconds": 2.0, "train_loss": 1.0, "val_macro_f1": 0.1, "val_f1": {"a": 0.1}}
               for m in (0, 1) for i in (1, 2)]
    assert [e["series"] for e in fold(events).epochs] == ["meta-learner 1 of 2"] * 2 + ["meta-learner 2 of 2"] * 2


def test_emoscope_train_with_unknown_data_fails_in_one_line(tiny_encoder, tiny_data, tmp_path, capsys):
    from emoscope.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "r"
[data]
train = "{tiny_data['train']}"
[[encoders]]
source = "{tiny_encoder}"
""", encoding="utf-8")
    events = tmp_path / "e.jsonl"
    assert main(["train", "--config", str(recipe), "--train", "nosuch:xx:train", "--events", str(events)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown corpus 'nosuch'" in err
    assert "unknown corpus 'nosuch'" in read_events(events)[-1]["reason"]
