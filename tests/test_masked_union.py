"""More data per target (``data.extra_train``): extra sets over the target's labels, label-masked.

The loss must ignore the labels a text's dataset does not annotate: asserted on stage 1's batch
loss and on the meta-learner's, by changing an unannotated label's prediction.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CUES, FILLER, tiny_config

from emoscope.config import DataConfig, LossConfig, MetaConfig, RunConfig
from emoscope.data import load_training_data, restrict_labels
from emoscope.losses import loss_from_config
from emoscope.models.meta import build_meta
from emoscope.training.classifier import ClassifierBatchLoss, build_classifier, tokenise
from emoscope.training.stack.embeddings import RaggedRows
from emoscope.training.stack.stage3 import MetaBatchLoss, MetaSelection

LOSSES = ("bce", "weighted_bce", "focal", "hybrid")


def write_extra(path: Path, n: int = 40, seed: int = 5) -> Path:
    """A labelled CSV annotating joy and sadness of the target's labels, plus love, which it lacks."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "joy", "sadness", "love"])
        for i in range(n):
            joy, sad, love = (int(rng.random() < 0.4) for _ in range(3))
            words = rng.sample(FILLER, 4) + ([rng.choice(CUES["joy"])] if joy else []) + \
                ([rng.choice(CUES["sadness"])] if sad else []) + (["beloved"] if love else [])
            writer.writerow([f"extra_{i}", " ".join(words), joy, sad, love])
    return path


@pytest.fixture()
def union_config(tiny_encoder, tiny_data, tmp_path) -> RunConfig:
    config = tiny_config(tiny_encoder, tiny_data, epochs=1)
    data = DataConfig(train=str(tiny_data["train"]), validation="holdout:0.2",
                      extra_train=(str(write_extra(tmp_path / "extra.csv")),))
    return config.replace(data=data)


def test_extra_data_joins_the_training_set_over_the_target_labels(union_config, tiny_data):
    data = load_training_data(union_config)
    target = load_training_data(union_config.replace(data=DataConfig(train=str(tiny_data["train"]),
                                                                     validation="holdout:0.2")))
    assert data.train.label_names == target.train.label_names == ["anger", "fear", "joy", "sadness"]
    assert len(data.train) == len(target.train) + 40
    # validation is the target's own hold-out, untouched by the extra texts
    assert data.validation.texts == target.validation.texts
    extra = data.train.label_mask[len(target.train):]
    assert extra[:, :2].sum() == 0 and extra[:, 2:].all()  # anger, fear unannotated; joy, sadness annotated
    assert data.train.label_mask[:len(target.train)].all()
    assert "extra_train" not in union_config.replace(data=target_data_config(tiny_data)).to_dict()["data"]
    assert RunConfig.from_dict(union_config.to_dict()) == union_config


def target_data_config(tiny_data) -> DataConfig:
    return DataConfig(train=str(tiny_data["train"]), validation="holdout:0.2")


def test_restrict_labels_keeps_an_existing_mask(union_config):
    data = load_training_data(union_config)
    twice = restrict_labels(data.train, ["joy", "anger"])
    np.testing.assert_array_equal(twice.label_mask[:, 0], data.train.label_mask[:, 2])
    np.testing.assert_array_equal(twice.label_mask[:, 1], data.train.label_mask[:, 0])
    assert restrict_labels(data.train, data.train.label_names) is data.train


def _moved(bias: torch.Tensor, j: int, by: float) -> None:
    with torch.no_grad():
        bias[j] += by


@pytest.mark.parametrize("loss", LOSSES)
def test_stage_one_loss_ignores_labels_a_text_dataset_does_not_annotate(union_config, loss):
    """On a batch of extra texts (anger unannotated), moving anger's logit leaves the loss as it
    was; moving joy's (annotated) changes it."""
    data = load_training_data(union_config)
    torch.manual_seed(0)
    model = build_classifier(union_config, union_config.encoder, data.train.label_names, torch.device("cpu"),
                             lambda _: None).eval()  # eval: no dropout, the same logits twice
    train_ids, _ = tokenise(model.word_encoder, data.train, data.validation, 32, lambda _: None)
    loss_fn = loss_from_config(LossConfig(name=loss), data.train.labels, data.train.label_mask)
    batch_loss = ClassifierBatchLoss(model, train_ids, data.train, loss_fn)
    extra_rows = np.flatnonzero(~data.train.label_mask[:, 0])[:16]
    with torch.no_grad():
        before = float(batch_loss(extra_rows))
        _moved(model.head.bias, 0, 3.0)
        assert float(batch_loss(extra_rows)) == pytest.approx(before, abs=1e-6)
        _moved(model.head.bias, 2, 3.0)
        assert abs(float(batch_loss(extra_rows)) - before) > 1e-3


@pytest.mark.parametrize("loss", LOSSES)
def test_meta_learner_loss_ignores_unannotated_labels(union_config, loss):
    data = load_training_data(union_config)
    rng = np.random.default_rng(0)
    n = len(data.train)
    lengths = rng.integers(1, 6, size=n)
    rows = RaggedRows.of_rows([rng.standard_normal((k, 8)).astype(np.float32) for k in lengths])
    torch.manual_seed(0)
    meta = build_meta([8], 4, MetaConfig(hidden_size=8, dense_size=8, dropout=0.0, input_dropout=0.0)).eval()
    selection = MetaSelection(rows, rows, [8], data.train, data.train)
    config = union_config.replace(loss=LossConfig(name=loss))
    loss_fn = loss_from_config(config.loss, data.train.labels, data.train.label_mask)
    batch_loss = MetaBatchLoss(meta, selection, loss_fn, torch.device("cpu"))
    extra_rows = np.flatnonzero(~data.train.label_mask[:, 0])[:16]
    with torch.no_grad():
        before = float(batch_loss(extra_rows))
        _moved(meta.out.bias, 1, 3.0)  # fear: unannotated in the extra texts
        assert float(batch_loss(extra_rows)) == pytest.approx(before, abs=1e-6)
        _moved(meta.out.bias, 3, 3.0)  # sadness: annotated
        assert abs(float(batch_loss(extra_rows)) - before) > 1e-3


def test_stage_one_can_leave_the_extra_data_to_the_meta_learner(tiny_encoder, tiny_data, tmp_path):
    """``stack.finetune_on_extra = false``: stage 1 fine-tunes on the target alone (the very models
    of a run without the extra data, reused from its work folder), the full model reads the extra
    texts (it never saw them) and the meta-learner trains on all of them."""
    from dataclasses import replace

    from conftest import tiny_stack_config

    from emoscope.training.stack.stage1 import StackTexts, run_stage1
    from emoscope.training.stack.stage2 import plan_reads, prepare_stack

    quiet = lambda _: None  # noqa: E731
    target = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=2, epochs=1)
    target = target.replace(data=target_data_config(tiny_data))
    union = target.replace(data=replace(target.data, extra_train=(str(write_extra(tmp_path / "extra.csv")),)),
                           stack=replace(target.stack, finetune_on_extra=False))
    work = tmp_path / "work"
    own = load_training_data(target)
    first = run_stage1(target, own, StackTexts.read(target, own), work, device=torch.device("cpu"), log=quiet,
                       progress=False)
    data = load_training_data(union)
    texts = StackTexts.read(union, data)
    logs: list[str] = []
    again = run_stage1(union, data, texts, work, device=torch.device("cpu"), log=logs.append, progress=False)
    assert sum("reusing the finished model" in line for line in logs) == 3 and not any("fine-tuning on" in line for line in logs)
    assert again.models["tiny0"].trained_on == first.models["tiny0"].trained_on == frozenset(texts.keys["train"][:len(own.train)])
    assert np.array_equal(again.folds[:len(own.train)], first.folds)
    extra = np.arange(len(own.train), len(data.train))
    full_reads = [j for j in plan_reads("tiny0", again, texts) if j.split == "train" and j.model.role == "full"]
    assert len(full_reads) == 1 and np.array_equal(full_reads[0].positions, extra)
    stacked = prepare_stack(union, data, device=torch.device("cpu"), work=work, progress=False, log=quiet)  # the leakage gate lets it through
    assert len(stacked.train_oof[0]) == len(data.train) == len(own.train) + 40
    # with the default (stage 1 fine-tunes on the extra data too) the models are new ones
    logs.clear()
    plain = union.replace(stack=replace(union.stack, finetune_on_extra=True))
    run_stage1(plain, data, texts, work, device=torch.device("cpu"), log=logs.append, progress=False)
    assert sum("fine-tuning on" in line for line in logs) == 3
