"""Benchmark: our lens over all layers and positions vs two anchors measured in the same run.

(a) TransformerLens's naive path: ``run_with_cache`` + ``accumulated_resid(apply_ln=True)`` @ W_U
    (materialises layers x positions x vocab);
(b) one plain forward with ``output_hidden_states`` + per-layer final norm and unembedding matmul,
    top-k per layer (the compute floor of any logit lens).

Each method runs in fresh subprocesses, one for time (best of ``--repeats``) and one for memory.
Peak memory is the resident-set growth over the level before the method ran, sampled every 2 ms,
in a child run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors go back to the system
at once (that allocator setting slows large allocations, so time is measured without it). Before
measuring, each child runs its method once, so that the weights (memory-mapped from the
safetensors file) are paged in and one-time set-up is not charged to the method.
Models: the shipped organism, and a randomly initialised model with Qwen2.5-0.5B's shapes (vocab
151,936, d_model 896, 14 heads / 2 KV heads, MLP 4,864) truncated to ``--layers`` layers.
Prints time and memory ratios against the anchors.
Targets: time <= 1.3 x (b); peak memory <= 1/10 of (a).

    python bench/bench_lens.py [--layers 4] [--seq 256] [--repeats 3] [--chunk-size 8192]
                               [--vocab 151936]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


class PeakRSS:
    """Samples resident memory every 2 ms in a thread: peak growth over the level at entry."""

    def __enter__(self):
        import threading

        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            self._stop.wait(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak - self.base


def build_qwen_shaped(out: Path, n_layers: int, vocab: int = 151_936) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from speech_interp.testing import tiny_tokenizer

    tok = tiny_tokenizer("sims")
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=896, intermediate_size=4_864, num_hidden_layers=n_layers,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _utterance(layout, seq: int):
    """One spoken utterance of about ``seq`` tokens: words of 8 units each."""
    from speech_interp.data import Utterance, Word

    n_words = max(1, (seq - 2) // 8)
    g = torch.Generator().manual_seed(0)
    words = tuple(
        Word(f"w{i}", "speech", tuple(torch.randint(layout.n_units, (8,), generator=g).tolist()))
        for i in range(n_words)
    )
    return Utterance("bench", words)


def _method(name: str, model, hf, ids, layout, chunk_size: int) -> None:
    import speech_interp as si
    from speech_interp.lens import LogitLens
    from speech_interp.lens.unembed import Unembedding

    if name == "ours":
        lens = LogitLens(model)
        stack = si.residual_stack(model, ids)[:, 0]
        positions = torch.arange(ids.shape[1])
        query = torch.zeros(len(positions), dtype=torch.long)
        lens.score_streams(stack, positions, query, layout, chunk_size)
    elif name == "plain":
        hidden = hf(ids, output_hidden_states=True).hidden_states
        un = Unembedding.from_model(model)
        for h in hidden:
            un.logits(un.normed(h[0])).topk(10, dim=-1)
    elif name == "tl_naive":
        _, cache = model.run_with_cache(ids)
        resid = cache.accumulated_resid(apply_ln=True)
        logits = resid @ model.W_U
        logits.topk(10, dim=-1)
    else:
        raise ValueError(f"unknown method {name!r}")


def run_method(method: str, model_path: str, args: argparse.Namespace) -> dict:
    """Best-of-``--repeats`` seconds, or the peak RSS growth of one run (``--quantity``)."""
    import speech_interp as si

    model, layout = si.load(model_path, backend="tl")
    utt = _utterance(layout, args.seq)
    ids = utt.to_prompt(layout, model.tokenizer).input_ids[None]
    hf = si.hf_model(model)
    run = (method, model, hf, ids, layout, args.chunk_size)
    with torch.no_grad():  # warm-up: weights paged in, lazy set-up done, not charged to anyone
        _method(*run)
    if args.quantity == "memory":
        with torch.no_grad(), PeakRSS() as mem:
            _method(*run)
        return {"peak_mb": mem.growth_mb}
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            _method(*run)
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times)}


def _child(method: str, model_path: str, args: argparse.Namespace, quantity: str) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--model", model_path]
    cmd += ["--seq", str(args.seq), "--repeats", str(args.repeats), "--quantity", quantity]
    cmd += ["--chunk-size", str(args.chunk_size)]
    env = dict(os.environ)
    if quantity == "memory":  # freed tensors go straight back to the system: RSS tracks live memory
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(method: str, model_path: str, args: argparse.Namespace) -> dict:
    """Time (default allocator) and memory (mmap allocator) in two fresh processes."""
    timing = _child(method, model_path, args, "time")
    memory = _child(method, model_path, args, "memory")
    errors = [r["error"] for r in (timing, memory) if "error" in r]
    if errors:
        return {"method": method, "error": errors[0]}
    return {"method": method, **timing, **memory}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=151_936, help="the Qwen-shaped model's vocab")
    ap.add_argument("--chunk-size", type=int, default=8192, help="our lens's vocabulary chunk")
    ap.add_argument("--child")
    ap.add_argument("--model")
    ap.add_argument("--quantity", choices=("time", "memory"), default="time")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_method(args.child, args.model, args)))
        return
    from speech_interp.models import resolve_source

    with tempfile.TemporaryDirectory() as tmp:
        qwen = str(build_qwen_shaped(Path(tmp) / "qwen", args.layers, args.vocab))
        for name, path in (("organism", resolve_source("organism")), ("qwen2.5-0.5b-shaped", qwen)):
            res = {m: measure(m, path, args) for m in ("ours", "plain", "tl_naive")}
            print(f"\n{name} (seq {args.seq}, our chunk_size {args.chunk_size}):")
            for r in res.values():
                print("  ", r)
            ours, plain, naive = res["ours"], res["plain"], res["tl_naive"]
            if "error" in ours:
                continue
            if "error" not in plain:
                ratio = ours["seconds"] / plain["seconds"]
                print(f"   time ours / plain forward+unembed = {ratio:.2f}")
            if "error" in naive:
                print("   TL naive path failed (", naive["error"], ") while ours ran")
            else:
                mem = ours["peak_mb"] / max(naive["peak_mb"], 1e-9)
                print(f"   peak memory ours / TL naive = {mem:.3f}")
                print(f"   time ours / TL naive = {ours['seconds'] / naive['seconds']:.2f}")


if __name__ == "__main__":
    main()
