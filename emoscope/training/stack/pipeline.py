"""A stacked recipe end to end: stages 1–3, scores, and the bundle."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emoscope import bundle as bundle_io
from emoscope import progress as run_progress  # (train_stack's `progress` switches the bars)
from emoscope.config import RunConfig
from emoscope.data import TrainingData
from emoscope.distributed import current_world
from emoscope.encoders import SOURCES, text_prefix
from emoscope.manifest import EncoderEntry, ModelSpec, build_manifest
from emoscope.metrics import compute_metrics
from emoscope.models import StackedModel
from emoscope.models.fingerprint import weights_fingerprint
from emoscope.models.meta import save_meta
from emoscope.models.runtime import peak_rss_mb
from emoscope.training.run import Logger, load_run_data, refuse_existing, run_cost, run_plan
from emoscope.training.stack.stage2 import StackInputs, prepare_stack
from emoscope.training.stack.stage3 import MetaFit, MetaSelection, fit_meta, meta_probs


def scores(data: TrainingData, stacked: StackInputs, fit: MetaFit, device: torch.device, log: Logger) -> dict[str, Any]:
    """The bundle's metrics: validation, and the eval split when the recipe has one."""
    labels = data.train.label_names
    val_ds, eval_ds = data.validation, data.eval
    results = {"validation": compute_metrics(val_ds.labels, fit.val_probs, fit.thresholds, label_names=labels,
                                             label_mask=val_ds.label_mask)}
    if eval_ds is not None:
        names = stacked.encoders
        probs = meta_probs(fit.meta.to(device), stacked.select(names, "eval"), device,
                           stacked.select_base(names, "eval"))
        results["eval"] = {"data": eval_ds.name,
                           **compute_metrics(eval_ds.labels, probs, fit.thresholds, label_names=labels,
                                             label_mask=eval_ds.label_mask)}
        log(f"[eval] {eval_ds.name}: macro-F1 {results['eval']['macro_f1']:.4f} micro-F1 {results['eval']['micro_f1']:.4f}")
    return results


def load_members(config: RunConfig, stacked: StackInputs) -> tuple[list[EncoderEntry], list[tuple[Any, nn.Module]]]:
    """Each encoder's manifest entry, and its tokenizer and weights as they go into the bundle."""
    base_names = stacked.base_names(stacked.encoders)
    entries, loaded = [], []
    for k, enc_cfg in enumerate(config.encoders):
        tokenizer, encoder = stacked.base_models[enc_cfg.label].load()
        loaded.append((tokenizer, encoder))
        entries.append(EncoderEntry(
            name=enc_cfg.label, source=enc_cfg.source, offline_source=enc_cfg.source in SOURCES,
            fine_tuned=enc_cfg.fine_tune, path=f"encoders/{k}-{enc_cfg.label}", text_prefix=text_prefix(enc_cfg.source),
            model_type=encoder.config.model_type, hidden_size=encoder.config.hidden_size,
            max_length=enc_cfg.max_length, fingerprint=weights_fingerprint(encoder), pooling=enc_cfg.pooling,
            head=enc_cfg.label in base_names))
    return entries, loaded


def write_model(folder: Path, *, entries: list[EncoderEntry], loaded: list[tuple[Any, nn.Module]],
                stacked: StackInputs, fit: MetaFit, labels: list[str]) -> None:
    """The bundle's ``model/``: each encoder (with its stage-1 head when the meta-learner reads it)
    and ``meta.safetensors``."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry, (tokenizer, encoder) in zip(entries, loaded):
        encoder.save_pretrained(folder / entry.path, safe_serialization=True)
        tokenizer.save_pretrained(folder / entry.path)
        if entry.head:
            shutil.copyfile(stacked.base_models[entry.name].folder / "head.safetensors",
                            folder / entry.path / "head.safetensors")
    for entry in text_base_entries(stacked):
        stacked.text_bases[entry["name"]].full.model.save(folder / entry["path"], labels)
    save_meta(fit.meta, folder / "meta.safetensors", labels, [e.fingerprint for e in entries],
              [k for k, e in enumerate(entries) if e.head], list(stacked.text_bases))


def text_base_entries(stacked: StackInputs) -> list[dict[str, Any]]:
    """The manifest's ``model.bases``: each text base's kind, name, folder and settings."""
    return [{"kind": b.config.kind, "name": name, "path": f"bases/{k}-{name}", "min_df": b.config.min_df,
             "C": b.config.C, "folds": len(b.fold_fits)} for k, (name, b) in enumerate(stacked.text_bases.items())]


def training_record(stacked: StackInputs, fit: MetaFit, seconds: float, device: torch.device) -> dict[str, Any]:
    """The manifest's ``training``: the meta-learner's best epoch, each stage's time and memory."""
    stages = {"finetune_seconds": round(stacked.stage_seconds["finetune"], 1),
              "embed_seconds": round(stacked.stage_seconds["embed"], 1), "meta_seconds": round(fit.seconds, 1),
              "peak_rss_mb_after": {**{k: round(v, 1) for k, v in stacked.stage_peak_rss_mb.items()},
                                    "meta": round(peak_rss_mb(), 1)}}
    if stacked.text_bases:
        stages["bases_seconds"] = round(sum(b.seconds for b in stacked.text_bases.values()), 1)
    return {"best_epoch": fit.best_epoch, "epochs_run": len(fit.history), "seconds": round(seconds, 1),
            "stages": stages, **run_cost(device)}


def train_stack(config: RunConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True,
                log: Logger = print, work: Path | None = None) -> Path:
    """Run a stacked recipe end to end (stages 1–3) and write the bundle to ``output``; ``work``
    replaces the recipe's stage-1 work folder. Under ``accelerate launch`` with several processes
    stages 1 and 2 are spread over them (``stage2.prepare_stack``); the main process alone checks
    the output, trains the meta-learner and writes the bundle, while the others wait for it."""
    world = current_world()
    output = world.main_first(refuse_existing, output, overwrite)
    started = time.perf_counter()
    device = world.device(config.training.device)
    data = load_run_data(config, log)
    labels = data.train.label_names
    report = run_progress.current()
    report.emit("plan", **run_plan(config, data))
    stacked = prepare_stack(config, data, device=device, work=work, progress=progress, log=log, world=world)
    if stacked is None:
        world.wait()  # for the main process's bundle
        return output
    report.emit("stage", name="meta", index=3, of=3)
    fit = fit_meta(config, MetaSelection.of(stacked, stacked.encoders, data), device=device, log=log)
    report.emit("stage", name="finish")
    results = scores(data, stacked, fit, device, log)
    entries, loaded = load_members(config, stacked)
    seconds = time.perf_counter() - started
    model_spec = ModelSpec(kind=StackedModel.kind, path="model", n_labels=len(labels), max_words=config.stack.max_words,
                           word_pooling=config.stack.word_pooling, folds=config.stack.folds,
                           meta={**dataclasses.asdict(config.meta), "input_sizes": stacked.input_sizes},
                           encoders=entries, bases=text_base_entries(stacked) or None)
    manifest = build_manifest(config, data, fit.thresholds, model_spec, results,
                              training_record(stacked, fit, seconds, device))
    validation = bundle_io.ValidationData.of(data.validation, fit.val_probs)
    writer = functools.partial(write_model, entries=entries, loaded=loaded, stacked=stacked, fit=fit, labels=labels)
    path = bundle_io.save_bundle(output, manifest, writer, validation=validation, log=fit.history, overwrite=overwrite)
    log(f"[done] {path} in {seconds:.0f}s; validation macro-F1 {results['validation']['macro_f1']:.4f}; "
        f"peak RSS {peak_rss_mb():.0f} MiB")
    report.emit("done", bundle=str(path), seconds=round(seconds, 1), val_macro_f1=results["validation"]["macro_f1"])
    world.wait()
    return path
