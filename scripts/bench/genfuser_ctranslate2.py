#!/usr/bin/env python3
"""CTranslate2 baseline for `blendd bench fuse`: the random-weight Flan-T5 of genfuser_torch.py (same config and
seed), saved as a Hugging Face checkpoint and converted with CTranslate2's own TransformersConverter to int8 or
float32, then timed on the same work as blendd (encoder, greedy decoding at batch 1 and 8, beam 4).

The protocol is genfuser_torch.py's: one JSON object with the same keys on stdout; status 3 and a message on
stderr when ctranslate2, torch or transformers is missing, so the caller skips it.

CTranslate2's Translator has no encoder-only call, so the encoder time is derived: a run decoding one token
costs encoder + one step, a run decoding n tokens encoder + n steps, hence encoder = t(1) - (t(n) - t(1)) / (n - 1).
The converted models are cached (per shape and quantization) under $XDG_CACHE_HOME/blendd-bench/ctranslate2, since
converting xl takes minutes and ~12 GB of disk for float32.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from bench_timing import best_of

try:
    import ctranslate2
    import torch
    import transformers
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration
except ImportError as error:
    print(f"CTranslate2 baseline skipped: {error}", file=sys.stderr)
    sys.exit(3)

SHAPES = {"base": (768, 2048, 12, 12), "large": (1024, 2816, 16, 24), "xl": (2048, 5120, 32, 24)}
VOCABULARY = 32128
# T5's sentencepiece part of the vocabulary; the rest are <extra_id_*>, which the converter appends itself.
PIECES = 32100


def build_checkpoint(shape, directory):
    """The random model of genfuser_torch.py, and a word-level tokenizer over token names t<id> (the converter needs
    a tokenizer for the vocabulary and the special tokens; real text is never tokenized here)."""
    d, ff, heads, layers = SHAPES[shape]
    config = T5Config(vocab_size=VOCABULARY, d_model=d, d_kv=64, d_ff=ff, num_layers=layers, num_decoder_layers=layers,
                      num_heads=heads, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    with torch.no_grad():
        model = T5ForConditionalGeneration(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    vocabulary = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocabulary.update({f"t{i}": i for i in range(3, PIECES)})
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocabulary, unk_token="<unk>")),
                                        pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(directory)


def converted_model(shape, quantization):
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "blendd-bench", "ctranslate2")
    target = os.path.join(cache, f"flan-t5-{shape}-random-{quantization}")
    if os.path.exists(os.path.join(target, "model.bin")):
        return target, 0.0
    start = time.perf_counter()
    # In a child process, so the torch model built for the conversion does not count in this process's peak memory.
    subprocess.run([sys.executable, __file__, "--convert-to", target, "--shape", shape, "--dtype", quantization], check=True)
    return target, time.perf_counter() - start


class Converter(ctranslate2.converters.TransformersConverter):
    """The converter, also with transformers releases older than its own (before 4.56 `from_pretrained` takes
    `torch_dtype`, not `dtype`)."""

    def load_model(self, model_class, model_name_or_path, **kwargs):
        if "dtype" in kwargs and not hasattr(transformers.PretrainedConfig(), "dtype"):
            kwargs["torch_dtype"] = kwargs.pop("dtype")
        return super().load_model(model_class, model_name_or_path, **kwargs)


def convert(shape, quantization, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    checkpoint = tempfile.mkdtemp(prefix=f"t5-{shape}-", dir=os.path.dirname(target))
    try:
        build_checkpoint(shape, checkpoint)
        converter = Converter(checkpoint, low_cpu_mem_usage=True)
        converter.convert(target, quantization=quantization, force=True)
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="large")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", choices=["int8", "fp32", "float32"], default="int8")
    parser.add_argument("--convert-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.convert_to:
        return convert(args.shape, args.dtype, args.convert_to)
    n = args.new_tokens
    if n < 2:
        parser.error("--new-tokens must be at least 2 (the encoder time is derived from runs of 1 and n tokens)")
    quantization = {"int8": "int8", "fp32": "float32", "float32": "float32"}[args.dtype]
    path, converted = converted_model(args.shape, quantization)
    threads = args.threads if args.threads > 0 else os.cpu_count()
    start = time.perf_counter()
    translator = ctranslate2.Translator(path, device="cpu", compute_type=quantization, inter_threads=1, intra_threads=threads)
    loaded = time.perf_counter() - start
    # The prompts of genfuser_torch.py (same generator and seed), as the converted vocabulary's token names.
    generator = torch.Generator().manual_seed(1)
    prompts = [[f"t{i}" for i in row] for row in torch.randint(5, 32000, (8, args.prompt_tokens), generator=generator).tolist()]

    def decode(batch, tokens, beams):
        # min = max length: end-of-sequence cannot stop a hypothesis early, so every run decodes exactly `tokens`.
        return translator.translate_batch(batch, beam_size=beams, num_hypotheses=1, max_decoding_length=tokens,
                                          min_decoding_length=tokens, length_penalty=1.0)

    out = {"shape": args.shape, "engine": f"ctranslate2-{args.dtype}", "convert_seconds": converted, "load_seconds": loaded}
    decode(prompts[:1], 2, 1)  # warm-up
    for b in (1, 8):
        # Best of a few runs each: the difference of two timings is sensitive to load on a shared machine.
        one = best_of(lambda: decode(prompts[:b], 1, 1))
        full = best_of(lambda: decode(prompts[:b], n, 1))
        out[f"generate_seconds_{b}"] = full
        out[f"encoder_seconds_{b}"] = max(0.0, one - (full - one) / (n - 1))
    out["beam4_seconds"] = best_of(lambda: decode(prompts[:1], n, 4))
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["threads"] = threads
    out["ctranslate2"] = ctranslate2.__version__
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
