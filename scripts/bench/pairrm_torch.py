#!/usr/bin/env python3
"""PyTorch fp32 baseline for `blendd bench rank`: PairRM's network (HF DebertaV2Model with the
DeBERTa-v3 structure + LLM-Blender's head) on random weights, timed on the same pair batches.

Prints one JSON object per sequence length, then one with the peak resident memory. Exits with
status 3 and a message on stderr when torch or transformers is missing, so the caller can skip it.
"""
import argparse
import json
import resource
import sys
import time

try:
    import torch
    from transformers import DebertaV2Config, DebertaV2Model
except ImportError as error:  # the bench prints this and goes on without a baseline
    print(f"PyTorch baseline skipped: {error}", file=sys.stderr)
    sys.exit(3)

SHAPES = {  # the published config.json of each backbone
    "microsoft/deberta-v3-large": (1024, 24, 16, 4096),
    "microsoft/deberta-v3-base": (768, 12, 12, 3072),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="microsoft/deberta-v3-large")
    parser.add_argument("--layers", type=int)
    parser.add_argument("--lengths", default="256,512,1024")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    hidden, layers, heads, inter = SHAPES[args.backbone]
    config = DebertaV2Config(
        vocab_size=128005, hidden_size=hidden, num_hidden_layers=args.layers or layers, num_attention_heads=heads,
        intermediate_size=inter, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=0,
        layer_norm_eps=1e-7, relative_attention=True, max_relative_positions=-1, position_buckets=256,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False)
    torch.manual_seed(0)
    with torch.no_grad():
        backbone = DebertaV2Model(config).eval()
        head = torch.nn.Sequential(torch.nn.Linear(2 * hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)).eval()

    def forward(ids, positions):
        out = backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        rows = torch.arange(ids.shape[0])
        s, c1, c2 = (out[rows, positions[k]] for k in range(3))
        return (head(torch.cat([s, c1], -1)) - head(torch.cat([s, c2], -1))).squeeze(-1)

    for length in [int(x) for x in args.lengths.split(",")]:
        generator = torch.Generator().manual_seed(length)
        ids = torch.randint(5, 128000, (args.pairs, length), generator=generator)
        positions = [torch.full((args.pairs,), p) for p in (1, length // 3 + 1, 2 * length // 3 + 1)]
        with torch.inference_mode():
            forward(ids, positions)  # warm-up
            runs, start = 0, time.perf_counter()
            while True:
                forward(ids, positions)
                runs += 1
                elapsed = time.perf_counter() - start
                if elapsed >= args.seconds:
                    break
        print(json.dumps({"length": length, "pairs": args.pairs, "runs": runs, "seconds": elapsed}), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss_bytes": peak, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
