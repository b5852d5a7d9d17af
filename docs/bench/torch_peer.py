#!/usr/bin/env python3
"""Scale's PyTorch peer: the bench's training step written in plain PyTorch, to compare Scale against side by side.

The model is the one `scale bench` trains (docs/bench.md): a LLaMA-style decoder with RMSNorm, rotary positions in
Hugging Face's rotate-half layout, causal multi-head attention, a SwiGLU feed-forward and an untied head. Each mode
trains what Scale's method of that name trains, with AdamW at a constant rate on one fixed random batch:

  full      every weight
  preserve  SCALE-Preserve: the base frozen and run without autograd; the new blocks W21, W22, the new embedding
            columns, the new head columns and the new norm gains
  adapt     SCALE-Adapt: as preserve, with W12 (zero at the start) in every linear map, so autograd runs through the
            base's stream too
  depth     depth expansion: after every k-th block a copy whose o_proj and down_proj are zero; only the copies train
  lora      rank-r adapters (B zero) on q, k, v and o; only the adapters train

It prints a JSON object per mode on its own line: method, tokens_per_second, step_ms, params, trainable_params,
threads, precision, torch. `--bf16` runs the step under PyTorch's CPU autocast (products in bfloat16, weights and
optimiser in fp32). Run it with Debian's python3-torch and libopenblas0-pthread, with the machine's OpenBLAS overrides
removed for its command only (docs/bench/side_by_side.sh does both), so that OpenBLAS picks its best kernels.

Debian's PyTorch does its matrix products in OpenBLAS, whose pthreads do not follow torch.set_num_threads: left alone,
OpenBLAS runs on every core under any --threads, so "1 thread" is really the machine's cores for the products, and at
2 threads PyTorch's two OpenMP threads and OpenBLAS's two contend for the two cores (measured: full fine-tuning at 2,638
tokens/s against 5,293 at "1 thread"). `--blas-threads` (default: the same as --threads) sets OpenBLAS's count through
its own openblas_set_num_threads, and each line records it.
"""
import argparse
import json
import math
import time

import ctypes

import torch
import torch.nn.functional as F


def openblas():
    """The OpenBLAS library this PyTorch loaded, or None (a build on MKL or another BLAS)."""
    torch.ones(2, 2) @ torch.ones(2, 2)
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "openblas" in path and ".so" in path:
                return ctypes.CDLL(path)
    return None


def set_blas_threads(n):
    """Sets OpenBLAS's thread count; returns the count OpenBLAS reports afterwards (None without OpenBLAS)."""
    lib = openblas()
    if lib is None:
        return None
    if n:
        lib.openblas_set_num_threads(n)
    return lib.openblas_get_num_threads()


def rms_norm(x, gain, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


class Rotary:
    """cos and sin tables (T, hs) in the rotate-half layout: the first and second halves of a head are the pairs."""

    def __init__(self, length, head_size, theta=10000.0):
        inverse = 1.0 / theta ** (torch.arange(0, head_size, 2).float() / head_size)
        angles = torch.outer(torch.arange(length).float(), inverse)
        both = torch.cat([angles, angles], dim=-1)
        self.cos, self.sin = both.cos(), both.sin()

    def __call__(self, x):  # (B, n, T, hs)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos + rotated * self.sin


def split_heads(x, n):  # (B, T, n*hs) -> (B, n, T, hs)
    b, t, _ = x.shape
    return x.view(b, t, n, -1).transpose(1, 2)


def merge_heads(x):  # (B, n, T, hs) -> (B, T, n*hs)
    b, n, t, hs = x.shape
    return x.transpose(1, 2).reshape(b, t, n * hs)


def attend(q, k, v, heads, rotary, mask):
    q, k, v = rotary(split_heads(q, heads)), rotary(split_heads(k, heads)), split_heads(v, heads)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return merge_heads(scores.masked_fill(mask, float("-inf")).softmax(-1) @ v)


def weight(rows, cols, trains, zero=False):
    values = torch.zeros(rows, cols) if zero else torch.randn(rows, cols) * 0.02
    return torch.nn.Parameter(values, requires_grad=trains)


def gain(width, trains):
    return torch.nn.Parameter(torch.ones(width), requires_grad=trains)


class Map(torch.nn.Module):
    """y = W x, widened by SCALE to [[W, W12], [W21, W22]] when `up` gives the new widths (in_u, out_u); LoRA adds B A."""

    def __init__(self, out_features, in_features, trains, zero=False, up=None, w12=False, lora_rank=0):
        super().__init__()
        self.w = weight(out_features, in_features, trains, zero)
        self.up = up is not None
        if self.up:
            in_up, out_up = up
            self.w21, self.w22 = weight(out_up, in_features, True), weight(out_up, in_up, True)
            self.w12 = weight(out_features, in_up, True, zero=True) if w12 else None
        self.lora = lora_rank > 0
        if self.lora:
            self.a = torch.nn.Parameter(torch.rand(lora_rank, in_features) * 2 / math.sqrt(in_features) - 1 / math.sqrt(in_features))
            self.b = weight(out_features, lora_rank, True, zero=True)

    def forward(self, x, xu=None):
        y = x @ self.w.T
        if self.lora:
            y = y + (x @ self.a.T) @ self.b.T * 2.0  # alpha / r = 16 / 8
        if not self.up:
            return y
        if self.w12 is not None:
            y = y + xu @ self.w12.T
        return y, x @ self.w21.T + xu @ self.w22.T


class Block(torch.nn.Module):
    def __init__(self, a, mode, inserted=False):
        super().__init__()
        trains = mode == "full" or inserted
        scale = mode in ("preserve", "adapt") and not inserted
        hs = a.d // a.heads
        self.heads, self.heads_up, self.scale = a.heads, a.up_heads, scale
        du = a.up_heads * hs

        def m(out_features, in_features, zero=False, up=None, lora=False):
            return Map(out_features, in_features, trains, zero=zero, up=up if scale else None, w12=mode == "adapt",
                       lora_rank=a.lora_rank if lora and mode == "lora" else 0)

        self.n1, self.n2 = gain(a.d, trains), gain(a.d, trains)
        self.q, self.k, self.v = (m(a.d, a.d, up=(du, du), lora=True) for _ in range(3))
        self.o = m(a.d, a.d, zero=inserted, up=(du, du), lora=True)
        self.gate, self.up = (m(a.ffn, a.d, up=(du, a.ffn_up)) for _ in range(2))
        self.down = m(a.d, a.ffn, zero=inserted, up=(a.ffn_up, du))
        if scale:
            self.n1u, self.n2u = gain(du, True), gain(du, True)

    def forward(self, x, xu, rotary, mask):
        if not self.scale:
            h = rms_norm(x, self.n1)
            x = x + self.o(attend(self.q(h), self.k(h), self.v(h), self.heads, rotary, mask))
            h = rms_norm(x, self.n2)
            return x + self.down(F.silu(self.gate(h)) * self.up(h)), None
        h, hu = rms_norm(x, self.n1), rms_norm(xu, self.n1u)
        (q, qu), (k, ku), (v, vu) = self.q(h, hu), self.k(h, hu), self.v(h, hu)
        o, ou = self.o(attend(q, k, v, self.heads, rotary, mask), attend(qu, ku, vu, self.heads_up, rotary, mask))
        x, xu = x + o, xu + ou
        h, hu = rms_norm(x, self.n2), rms_norm(xu, self.n2u)
        (g, gu), (u, uu) = self.gate(h, hu), self.up(h, hu)
        d, du = self.down(F.silu(g) * u, F.silu(gu) * uu)
        return x + d, xu + du


class Decoder(torch.nn.Module):
    def __init__(self, a, mode):
        super().__init__()
        full, scale = mode == "full", mode in ("preserve", "adapt")
        self.preserve = mode == "preserve"
        self.embedding = weight(a.vocab, a.d, full)
        blocks = []
        for i in range(a.layers):
            blocks.append(Block(a, mode))
            if mode == "depth" and (i + 1) % a.depth_every == 0:
                blocks.append(Block(a, mode, inserted=True))
        self.blocks = torch.nn.ModuleList(blocks)
        self.norm, self.head = gain(a.d, full), weight(a.vocab, a.d, full)
        self.du = a.up_heads * (a.d // a.heads) if scale else 0
        if self.du:
            self.embedding_up, self.norm_up = weight(a.vocab, self.du, True), gain(self.du, True)
            self.head_up = weight(a.vocab, self.du, True, zero=True)
        self.rotary = Rotary(a.seq, a.d // a.heads)
        self.mask = torch.ones(a.seq, a.seq, dtype=torch.bool).triu(1)

    def forward(self, tokens):
        x = F.embedding(tokens, self.embedding)
        xu = F.embedding(tokens, self.embedding_up) if self.du else None
        for block in self.blocks:
            x, xu = block(x, xu, self.rotary, self.mask)
        logits = rms_norm(x, self.norm) @ self.head.T
        if self.du:
            logits = logits + rms_norm(xu, self.norm_up) @ self.head_up.T
        return logits


class PreservedDecoder(Decoder):
    """SCALE-Preserve: the original stream is the frozen base's, so it runs without autograd; the new stream reads it."""

    def forward(self, tokens):
        with torch.no_grad():
            x = F.embedding(tokens, self.embedding)
            base = []
            for block in self.blocks:  # the base's stream and what each block's maps read from it
                h = rms_norm(x, block.n1)
                q, k, v = h @ block.q.w.T, h @ block.k.w.T, h @ block.v.w.T
                a = attend(q, k, v, block.heads, self.rotary, self.mask)
                x2 = x + a @ block.o.w.T
                h2 = rms_norm(x2, block.n2)
                m = F.silu(h2 @ block.gate.w.T) * (h2 @ block.up.w.T)
                base.append((h, a, h2, m))
                x = x2 + m @ block.down.w.T
            logits = rms_norm(x, self.norm) @ self.head.T
        xu = F.embedding(tokens, self.embedding_up)
        for block, (h, a, h2, m) in zip(self.blocks, base):
            hu = rms_norm(xu, block.n1u)
            qu, ku, vu = (h @ p.w21.T + hu @ p.w22.T for p in (block.q, block.k, block.v))
            xu = xu + a @ block.o.w21.T + attend(qu, ku, vu, block.heads_up, self.rotary, self.mask) @ block.o.w22.T
            hu = rms_norm(xu, block.n2u)
            mu = F.silu(h2 @ block.gate.w21.T + hu @ block.gate.w22.T) * (h2 @ block.up.w21.T + hu @ block.up.w22.T)
            xu = xu + m @ block.down.w21.T + mu @ block.down.w22.T
        return logits + rms_norm(xu, self.norm_up) @ self.head_up.T


def bench(a, mode):
    torch.manual_seed(0)
    model = (PreservedDecoder if mode == "preserve" else Decoder)(a, mode)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=1e-3)
    batch = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), targets.reshape(-1))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    print(json.dumps({
        "method": mode, "tokens_per_second": a.batch * a.seq / median, "step_ms": 1000 * median,
        "params": sum(p.numel() for p in model.parameters()), "trainable_params": sum(p.numel() for p in trained),
        "threads": torch.get_num_threads(), "blas_threads": a.blas_threads_set,
        "precision": "bf16" if a.bf16 else "fp32", "final_loss": loss,
        "torch": torch.__version__,
    }), flush=True)


def peak(blas):
    """The matrix-product peak as this PyTorch reaches it: a 2048³ product in fp32 and in bf16, the best of five."""
    n = 2048
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        for _ in range(2):
            a @ b
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        print(json.dumps({"method": "peak", "precision": name, "threads": torch.get_num_threads(), "blas_threads": blas,
                          "gflops_per_second": 2 * n ** 3 / best / 1e9, "torch": torch.__version__}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="full,preserve,adapt,depth,lora")
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=688)
    p.add_argument("--up-heads", type=int, default=1)
    p.add_argument("--ffn-up", type=int, default=172)
    p.add_argument("--depth-every", type=int, default=2)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--blas-threads", type=int, default=-1,
                   help="OpenBLAS's threads (default: as --threads; 0 leaves OpenBLAS's own choice, every core)")
    p.add_argument("--bf16", action="store_true", help="CPU autocast: products in bfloat16")
    p.add_argument("--peak", action="store_true", help="only the matrix-product peak, fp32 and bf16")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    a.blas_threads_set = set_blas_threads(a.threads if a.blas_threads < 0 else a.blas_threads)
    if a.peak:
        peak(a.blas_threads_set)
        return
    for mode in a.modes.split(","):
        bench(a, mode)


if __name__ == "__main__":
    main()
