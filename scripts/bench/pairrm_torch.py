#!/usr/bin/env python3
"""Baselines for `blendd bench rank`: PairRM's network (HF DebertaV2Model with the DeBERTa-v3 structure +
LLM-Blender's head) on random weights, timed on the same pair batches by each engine of --engines:
torch-fp32 (eager), torch-bf16 (CPU autocast to bfloat16) and onnxruntime (fp32, the same network exported
with torch.onnx); torch-bf16-gemm times PyTorch's bf16 matmul (oneDNN) alone on each of --gemm-shapes (MxKxN, the
FFN's products by default), for the bench's bf16 GEMM peak. scripts/bench/setup_venv.sh installs them from PyPI; CI never runs this.

Prints one JSON object per engine and sequence length, then one with the peak resident memory. Exits with
status 3 and a message on stderr when torch or transformers is missing, so the caller can skip it; an
engine whose package is missing is reported on stderr and skipped.
"""
import os
import shutil
import tempfile
import argparse
import atexit
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
    parser.add_argument("--engines", default="torch-fp32,torch-bf16,onnxruntime")
    parser.add_argument("--gemm-shapes", help="MxKxN products for torch-bf16-gemm (default: the FFN's two at 2048 rows)")
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

    class Network(torch.nn.Module):
        """The same forward with the weights registered, so the ONNX export sees them as parameters."""
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, ids, s, c1, c2):
            return forward(ids, (s, c1, c2))

    def timed(run, seconds=None):
        run()  # warm-up
        runs, start = 0, time.perf_counter()
        while True:
            run()
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= (seconds or args.seconds):
                return runs, elapsed

    def engine_runner(engine, ids, positions):
        if engine == "torch-fp32":
            def run():
                with torch.inference_mode():
                    forward(ids, positions)
            return run
        if engine == "torch-bf16":
            def run():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    forward(ids, positions)
            return run
        if engine == "onnxruntime":
            import onnxruntime
            # The export (1.7 GB at 24 layers) is removed when the script ends.
            export_dir = tempfile.mkdtemp()
            atexit.register(shutil.rmtree, export_dir, True)
            path = os.path.join(export_dir, "pairrm.onnx")
            torch.onnx.export(Network(), (ids, *positions), path, input_names=["ids", "s", "c1", "c2"],
                              dynamic_axes={"ids": {0: "pairs", 1: "length"}, "s": {0: "pairs"}, "c1": {0: "pairs"}, "c2": {0: "pairs"}},
                              opset_version=17, dynamo=False)
            options = onnxruntime.SessionOptions()
            if args.threads > 0:
                options.intra_op_num_threads = args.threads
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {"ids": ids.numpy(), "s": positions[0].numpy(), "c1": positions[1].numpy(), "c2": positions[2].numpy()}
            return lambda: session.run(None, feed)
        raise SystemExit(f"unknown engine {engine}")

    versions = {"torch": torch.__version__}
    engines = args.engines.split(",")
    if "torch-bf16-gemm" in engines:
        engines.remove("torch-bf16-gemm")
        shapes = args.gemm_shapes or f"2048x{hidden}x{inter},2048x{inter}x{hidden}"
        for shape in shapes.split(","):
            m, k, n = (int(x) for x in shape.split("x"))
            a = torch.randn(m, k).bfloat16()
            b = torch.randn(n, k).bfloat16()
            with torch.inference_mode():
                runs, elapsed = timed(lambda: torch.matmul(a, b.t()), seconds=min(args.seconds, 2))
            print(json.dumps({"engine": "torch-bf16-gemm", "shape": f"M={m} K={k} N={n}",
                              "gemm_gflops": runs * 2 * m * k * n / elapsed / 1e9}), flush=True)
    for engine in engines:
        for length in [int(x) for x in args.lengths.split(",")]:
            generator = torch.Generator().manual_seed(length)
            ids = torch.randint(5, 128000, (args.pairs, length), generator=generator)
            positions = [torch.full((args.pairs,), p) for p in (1, length // 3 + 1, 2 * length // 3 + 1)]
            try:
                runs, elapsed = timed(engine_runner(engine, ids, positions))
            except Exception as error:  # a missing package or a failed export skips this engine, with the reason
                print(f"{engine} skipped: {error}", file=sys.stderr)
                break
            if engine == "onnxruntime":
                import onnxruntime
                versions["onnxruntime"] = onnxruntime.__version__
            print(json.dumps({"engine": engine, "length": length, "pairs": args.pairs, "runs": runs, "seconds": elapsed}), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss_bytes": peak, "threads": torch.get_num_threads(), "versions": versions}), flush=True)


if __name__ == "__main__":
    main()
