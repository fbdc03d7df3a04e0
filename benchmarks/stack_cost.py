"""Training cost of stacked bundles, per stage, from what ``emoscope train`` recorded.

Reads each bundle's ``manifest.json`` (``training.stages``: seconds of stage 1 fine-tuning,
stage 2 embedding and stage 3 meta-learner; the process's peak RSS after each stage) and
prints a Markdown table. The bundles come from

    /usr/bin/time -v .venv/bin/emoscope train --config training/configs/NAME.toml --output DIR --quiet

(the wall time and peak RSS that ``/usr/bin/time`` prints are the whole process's). On a
machine with a CUDA GPU the same command trains there (recipes say ``device = "auto"``) and the
table's device column adds the peak GPU memory and the precision (bf16 on GPUs that have it).

    .venv/bin/python benchmarks/stack_cost.py benchmarks/results/quality/bundles/*-stack
"""

from __future__ import annotations

import argparse

from emoscope.bundle import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+")
    args = parser.parse_args()
    print("| recipe | train texts | stage 1 fine-tune | stage 2 embed | stage 3 meta | total | peak RSS after 1 / 2 / 3 | device | threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for folder in args.bundles:
        manifest = read_manifest(folder, verify=False)
        if manifest.model.kind != "stacked":
            continue
        t = manifest.training
        s = t["stages"]
        peaks = s["peak_rss_mb_after"]
        print(f"| {manifest.name} | {manifest.data['n_train']} | {s['finetune_seconds']:.0f} s | "
              f"{s['embed_seconds']:.0f} s | {s['meta_seconds']:.0f} s | {t['seconds']:.0f} s | "
              f"{peaks['finetune']:.0f} / {peaks['embed']:.0f} / {peaks['meta']:.0f} MiB | {device(t)} | {t['torch_threads']} |")


def device(training: dict) -> str:
    """The device, and on a GPU its peak memory and precision (bundles record them since the CUDA review)."""
    name = training.get("device", "?")
    if "peak_gpu_mb" in training:
        name += f", peak {training['peak_gpu_mb']:.0f} MiB GPU memory, {training.get('precision', '?')}"
    return name


if __name__ == "__main__":
    main()
