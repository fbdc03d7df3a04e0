"""EmbeddingGemma-300M on the real weights: what the project relies on, and its throughput against me5-small.

Checks, on the installed ``embeddinggemma-300m`` source (``emoscope models install embeddinggemma-300m``):
the dtype it loads in; whether ``WordEncoder`` (the prompt + the words, ``is_split_into_words``)
gives the same token ids as the same text tokenised as running text, and every word a token;
that ``get_input_embeddings()(ids)`` as ``inputs_embeds`` (what IG passes) gives what
``input_ids`` gives (Gemma scales its embeddings by sqrt(hidden) inside that module), while the
raw embedding rows do not; that right padding is masked (bidirectional attention); that an
eager-attention copy returns attention weights and the same hidden states; bf16 autocast against
fp32. Then throughput: texts/s of one plain forward pass per length-ordered batch of 32 (the
project's word path, fp32, ``inference_mode``) over the first 256 BRIGHTER arq training texts,
me5-small, EmbeddingGemma, me5-small again, in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gemma_check.py --threads 1 --output /tmp/gemma-check.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from emoscope.data import load_dataset
from emoscope.encoders import load_encoder, text_prefix
from emoscope.models.runtime import autocast_context, length_batches, peak_rss_mb
from emoscope.text import NormalizerConfig
from emoscope.words import WordEncoder

GEMMA, ME5 = "embeddinggemma-300m", "me5-small"
TEXTS = ["I am so happy today 😀", "فرحان بزاف اليوم والله", "ما عجبنيش هاد الشي كامل، راني زعفان"]


def word_checks(tokenizer, encoder: WordEncoder) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {"same_ids_as_running_text": [], "every_word_has_a_token": []}
    for text, (ids, index) in zip(TEXTS, encoder.encode_texts(TEXTS)):
        words = encoder.words(text)
        running = tokenizer(f"{encoder.prefix} {' '.join(words)}")["input_ids"]
        out["same_ids_as_running_text"].append(ids == running)
        out["every_word_has_a_token"].append(all(i in index for i in range(len(words))))
    return out


@torch.inference_mode()
def model_checks(model, batch: dict[str, torch.Tensor]) -> dict[str, object]:
    ids, mask = batch["input_ids"], batch["attention_mask"]
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask).last_hidden_state
    raw = model(inputs_embeds=model.get_input_embeddings().weight[ids], attention_mask=mask).last_hidden_state
    padding = max(float((model(input_ids=ids[r:r + 1, : int(mask[r].sum())]).last_hidden_state[0]
                         - hidden[r, : int(mask[r].sum())]).abs().max()) for r in range(len(ids)))
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    attended = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
    with autocast_context(torch.device("cpu"), "bf16"):
        bf16 = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    real = mask.bool()
    return {"inputs_embeds_vs_input_ids_max_abs_diff": float((embeds - hidden).abs().max()),
            "raw_embedding_rows_vs_input_ids_max_abs_diff": float((raw - hidden).abs().max()),
            "embed_scale": float(model.get_input_embeddings().embed_scale),
            "right_padding_max_abs_diff": padding,
            "eager_vs_sdpa_max_abs_diff": float((attended.last_hidden_state - hidden).abs().max()),
            "attention_layers": len(attended.attentions), "attention_shape": list(attended.attentions[0].shape),
            "bf16_vs_fp32_min_cosine": float(torch.cosine_similarity(bf16[real], hidden[real], dim=-1).min())}


@torch.inference_mode()
def throughput(model, encoder: WordEncoder, texts: list[str]) -> dict[str, float]:
    encoded = encoder.encode_texts(texts)
    lengths = [len(ids) for ids, _ in encoded]
    start = time.perf_counter()
    for idx in length_batches(lengths, 32):
        batch = encoder.pad([encoded[i] for i in idx])
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    seconds = time.perf_counter() - start
    return {"texts": len(texts), "seconds": round(seconds, 1), "texts_per_s": round(len(texts) / seconds, 1),
            "tokens_per_text": round(sum(lengths) / len(lengths), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    norm = NormalizerConfig()
    tokenizer, gemma = load_encoder(GEMMA)
    tokenizer5, me5 = load_encoder(ME5)
    gemma_words = WordEncoder(tokenizer, norm, 128, 64, text_prefix(GEMMA))
    me5_words = WordEncoder(tokenizer5, norm, 128, 64, text_prefix(ME5))
    result: dict[str, object] = {"threads": torch.get_num_threads(), "dtype": str(next(gemma.parameters()).dtype),
                                 **word_checks(tokenizer, gemma_words),
                                 **model_checks(gemma.eval(), gemma_words.pad(gemma_words.encode_texts(TEXTS)))}
    texts = list(load_dataset("brighter:arq:train").texts[:256])
    for label, model, words in ((ME5, me5, me5_words), (GEMMA, gemma, gemma_words), (f"{ME5} again", me5, me5_words)):
        result[f"throughput {label}"] = throughput(model.eval(), words, texts)
    result["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
