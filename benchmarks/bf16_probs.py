"""Save the default bundle's bf16 (explanation-precision) probabilities for 100 Arabic and 100
English SemEval-2018 dev texts, to compare two versions of the code:

    git worktree add /tmp/before <rev>
    (cd /tmp/before && EMOSCOPE_DATA_ROOT=$PWD/../shared/datasets /work/main/.venv/bin/python /work/main/benchmarks/bf16_probs.py /tmp/old.npy \
        --model /work/main/models/default)
    .venv/bin/python benchmarks/bf16_probs.py /tmp/new.npy --compare /tmp/old.npy

It imports ``emoscope`` from the current directory, so run it from the checkout to measure.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

sys.path.insert(0, ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--compare", help="another run's .npy: print the largest and mean difference")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from emoscope.data import load_dataset
    from emoscope.explain import ExplainModel
    from emoscope.predict import Predictor

    texts = load_dataset("semeval2018:ar:dev").texts[:100] + load_dataset("semeval2018:en:dev").texts[:100]
    model = ExplainModel(Predictor(args.model, device="cpu", verify=False))
    probs = model.predict_texts(texts, 64, "bf16")
    np.save(args.output, probs)
    if args.compare:
        diff = np.abs(probs - np.load(args.compare))
        print(f"max {diff.max():.4f}, mean {diff.mean():.4f} over {diff.size} probabilities")


if __name__ == "__main__":
    main()
