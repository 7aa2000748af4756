#!/usr/bin/env python3
"""PyTorch baseline for `blendd bench fuse`: HF T5ForConditionalGeneration with a Flan-T5 shape on
random weights, timed on the same work as blendd (encoder, greedy decoding at batch 1 and 8, beam 4), in
fp32 eager or (--dtype bf16) under CPU autocast to bfloat16.

Prints one JSON object with the timings. Exits with status 3 and a message on stderr when torch or
transformers is missing, so the caller can skip it.
"""
import argparse
import json
import resource
import sys
import time

from bench_timing import best_of

try:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration
except ImportError as error:
    print(f"PyTorch baseline skipped: {error}", file=sys.stderr)
    sys.exit(3)

SHAPES = {"base": (768, 2048, 12, 12), "large": (1024, 2816, 16, 24), "xl": (2048, 5120, 32, 24)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="large")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    d, ff, heads, layers = SHAPES[args.shape]
    config = T5Config(vocab_size=32128, d_model=d, d_kv=64, d_ff=ff, num_layers=layers, num_decoder_layers=layers,
                      num_heads=heads, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.no_grad():
        model = T5ForConditionalGeneration(config).eval()
    built = time.perf_counter() - start
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randint(5, 32000, (8, args.prompt_tokens), generator=generator)
    n = args.new_tokens
    out = {"shape": args.shape, "build_seconds": built, "engine": f"torch-{args.dtype}"}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    with torch.inference_mode(), autocast:
        model.generate(input_ids=prompts[:1, :8], max_new_tokens=2)  # warm-up
        out["encoder_seconds_8"] = best_of(lambda: model.encoder(input_ids=prompts))
        out["encoder_seconds_1"] = best_of(lambda: model.encoder(input_ids=prompts[:1]))
        for b in (1, 8):
            out[f"generate_seconds_{b}"] = best_of(lambda: model.generate(
                input_ids=prompts[:b], max_new_tokens=n, min_new_tokens=n, num_beams=1, do_sample=False))
        out["beam4_seconds"] = best_of(lambda: model.generate(
            input_ids=prompts[:1], max_new_tokens=n, min_new_tokens=n, num_beams=4, do_sample=False))
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
