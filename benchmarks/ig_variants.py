"""Ways tried to make Integrated Gradients (all 11 labels, 50 steps) faster on this CPU, against
the project's own implementation, on the 30-word Arabic text of ``explain_speed.py``:

- ``eager``: ``emoscope.explain.ig_word_attributions`` as shipped (one backward pass per label
  over the kept graph), 25 steps per batch, precision ``auto``;
- ``batched``: the same forward pass, then one vmapped backward for all labels at once
  (``torch.autograd.grad(..., is_grads_batched=True)``);
- ``compiled``: the shipped code with each encoder wrapped in ``torch.compile`` (inductor).

Each variant runs in its own process; the first call (warm-up, and compilation) and two more
are timed.

    .venv/bin/python benchmarks/ig_variants.py --output benchmarks/results/ig-variants.json
    .venv/bin/python benchmarks/ig_variants.py --profile     # where the shipped path's time goes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("eager", "batched", "compiled", "profile")


def batched_ig(model, text: str, indices: list[int], n_steps: int, step_batch: int) -> None:
    import torch
    from captum.attr._utils.approximation_methods import approximation_parameters

    from emoscope.models import autocast_context

    _, _, model_words = model.words(text)
    batches = model.batches(model_words)
    inputs, bases = model.input_embeddings(batches), model.baselines(batches)
    step_sizes, alphas = approximation_parameters("gausslegendre")
    weights, points = step_sizes(n_steps), alphas(n_steps)
    m = len(indices)
    totals = [torch.zeros((m, *x.shape[1:])) for x in inputs]
    for start in range(0, n_steps, step_batch):
        a = torch.as_tensor(points[start:start + step_batch], dtype=torch.float32)
        w = torch.as_tensor(weights[start:start + step_batch], dtype=torch.float32)
        scaled = [(b + a[:, None, None] * (x - b)).requires_grad_(True) for x, b in zip(inputs, bases)]
        with autocast_context(model.device, "auto"):
            probs = model.forward_embeds(scaled, batches, len(model_words))[:, indices]
        eye = torch.eye(m)[:, None, :].expand(m, probs.shape[0], m).contiguous()
        grads = torch.autograd.grad(probs, scaled, eye, is_grads_batched=True)
        for k, g in enumerate(grads):
            totals[k] += (g * w[None, :, None, None]).sum(1)


def child(model_dir: str, variant: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from explain_speed import thirty_words

    from emoscope.explain import ExplainModel, ig_word_attributions
    from emoscope.predict import Predictor

    text = thirty_words("semeval2018:ar:dev")
    predictor = Predictor(model_dir, device="cpu", verify=False)
    model = ExplainModel(predictor)
    indices = list(range(len(model.labels)))
    if variant == "compiled":
        for k in range(len(predictor.model.encoders)):
            predictor.model.encoders[k] = torch.compile(predictor.model.encoders[k], dynamic=False)
    if variant == "profile":
        from torch.profiler import ProfilerActivity, profile

        ig_word_attributions(model, text, indices, 50, 25, "auto")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ig_word_attributions(model, text, indices, 50, 25, "auto")
        return {"variant": variant, "table": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)}
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        if variant == "batched":
            batched_ig(model, text, indices, 50, 25)
        else:
            ig_word_attributions(model, text, indices, 50, 25, "auto")
        seconds.append(round(time.perf_counter() - start, 2))
    return {"variant": variant, "first_s": seconds[0], "warm_s": seconds[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="eager,batched,compiled")
    parser.add_argument("--profile", action="store_true", help="profile the shipped path instead (torch.profiler)")
    parser.add_argument("--output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.child, args.threads)))
        return
    rows = []
    for variant in ["profile"] if args.profile else args.variants.split(","):
        proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--threads", str(args.threads),
                               "--child", variant], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        if variant == "profile":
            print(row["table"])
            continue
        print(f"{variant:<9} first {row['first_s']:6.1f} s, then {', '.join(f'{s:.1f}' for s in row['warm_s'])} s", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model, "threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
