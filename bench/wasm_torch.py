#!/usr/bin/env python3
"""The PyTorch side of bench/wasm.ts: the same LongLoRA training step on the CPU, plain torch.

Model (as bench/wasm.ts): a Llama with 8 layers, hidden 512, MLP 1536 (SwiGLU), 8 heads of
dim 64, vocab 32000, untied frozen output head; LoRA r=8 / alpha 16 on q, k, v, o (base
weights frozen) with trainable embeddings and norms; f32; activation checkpointing per
layer; AdamW (betas 0.9/0.95) with clipping at 1.0; one sequence of --seq tokens.

Attention, written with plain ops (this PyTorch has no fused attention on the CPU):
  dense  causal softmax(q·kᵀ/√D + mask)·v over blocks of 1024 queries, each block
         checkpointed so that only one block's N×1024 scores are held at a time;
  s2     S²-Attn, the leak-free segmented form with G = N/4: heads [0, H/2) attend causally
         inside groups [0,G), [G,2G), ...; heads [H/2, H) inside groups shifted by G/2
         ([0,G/2), [G/2,3G/2), ..., [N−G/2,N)) — masked attention per group, the groups
         batched.
The loss runs over blocks of 1024 rows (head + cross-entropy, checkpointed), so the N×V
logits are never held — the same as the TypeScript side.

Prints progress to stderr and, as its last stdout line, JSON:
{"seconds": ..., "tokens_per_second": ..., "loss": ..., "seq": ..., "attn": ..., "threads": ...}

    /usr/bin/python3 bench/wasm_torch.py --seq 4096 --attn s2 [--threads 2]
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

ap = argparse.ArgumentParser()
ap.add_argument("--seq", type=int, default=4096)
ap.add_argument("--attn", choices=["dense", "s2"], default="s2")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--layers", type=int, default=8)
args = ap.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(0)
V, C, I, L, H = 32000, 512, 1536, args.layers, 8
D = C // H
EPS = 1e-5
BLOCK = 1024


class LoRALinear(nn.Module):
    """y = x·Wᵀ + (alpha/r)·(x·Aᵀ)·Bᵀ with W frozen, A and B trainable."""

    def __init__(self, fin, fout, r=8, alpha=16):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin) * 0.02, requires_grad=False)
        self.A = nn.Parameter(torch.empty(r, fin))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(fout, r))
        self.scale = alpha / r

    def forward(self, x):
        return F.linear(x, self.weight) + self.scale * F.linear(F.linear(x, self.A), self.B)


class Frozen(nn.Module):
    def __init__(self, fin, fout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin) * 0.02, requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def rope_tables(n):
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()  # (N, D/2)


def rope(x, cos, sin):  # x (B, N, h, D)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def causal_attention(q, k, v):
    """q, k, v (b, n, h, D) → (b, n, h, D): causal softmax attention, one block per call."""
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
    n = q.shape[1]
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)


def dense_block(q, k, v, start):
    """Queries [start, start+len(q)) against keys [0, start+len(q)), causal."""
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
    nq, nk = q.shape[1], k.shape[1]
    mask = torch.arange(nk)[None, :] > (start + torch.arange(nq))[:, None]
    s = s.masked_fill(mask, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)


def dense_attention(q, k, v):
    n = q.shape[1]
    out = []
    for s0 in range(0, n, BLOCK):
        e = min(n, s0 + BLOCK)
        out.append(checkpoint(dense_block, q[:, s0:e], k[:, :e], v[:, :e], s0, use_reentrant=False))
    return torch.cat(out, dim=1)


def grouped(q, k, v, g):
    """Causal attention inside consecutive groups of g tokens (n divisible by g)."""
    b, n, h, d = q.shape
    r = lambda x: x.reshape(b * (n // g), g, h, d)
    return causal_attention(r(q), r(k), r(v)).reshape(b, n, h, d)


def s2_attention(q, k, v):
    n = q.shape[1]
    g = n // 4
    half = H // 2
    o1 = grouped(q[:, :, :half], k[:, :, :half], v[:, :, :half], g)
    # shifted heads: [0, g/2) | groups of g over [g/2, n − g/2) | [n − g/2, n)
    qs, ks, vs = q[:, :, half:], k[:, :, half:], v[:, :, half:]
    a, z = g // 2, n - g // 2
    parts = [causal_attention(qs[:, :a], ks[:, :a], vs[:, :a]),
             grouped(qs[:, a:z], ks[:, a:z], vs[:, a:z], g),
             causal_attention(qs[:, z:], ks[:, z:], vs[:, z:])]
    return torch.cat([o1, torch.cat(parts, dim=1)], dim=2)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = RMSNorm(C)
        self.q, self.k, self.v, self.o = (LoRALinear(C, C) for _ in range(4))
        self.post_attention_layernorm = RMSNorm(C)
        self.gate, self.up, self.down = Frozen(C, I), Frozen(C, I), Frozen(I, C)

    def forward(self, x, cos, sin):
        b, n, _ = x.shape
        h = self.input_layernorm(x)
        q = rope(self.q(h).view(b, n, H, D), cos, sin)
        k = rope(self.k(h).view(b, n, H, D), cos, sin)
        v = self.v(h).view(b, n, H, D)
        a = s2_attention(q, k, v) if args.attn == "s2" else dense_attention(q, k, v)
        x = x + self.o(a.reshape(b, n, C))
        h = self.post_attention_layernorm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(V, C)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.norm = RMSNorm(C)
        self.lm_head = Frozen(C, V)

    def loss(self, ids):
        n = ids.shape[1]
        cos, sin = rope_tables(n)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = checkpoint(layer, x, cos, sin, use_reentrant=False)
        h = self.norm(x)[0]
        targets = torch.cat([ids[0, 1:], torch.tensor([-100])])
        total = h.new_zeros(())
        for s0 in range(0, n, BLOCK):
            e = min(n, s0 + BLOCK)
            part = lambda hh, tt: F.cross_entropy(self.lm_head(hh), tt, ignore_index=-100, reduction="sum")
            total = total + checkpoint(part, h[s0:e], targets[s0:e], use_reentrant=False)
        return total / (n - 1)


def step(model, opt, ids):
    loss = model.loss(ids)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


model = Model()
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=2e-5, betas=(0.9, 0.95), weight_decay=0.0)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seq {args.seq}, attention {args.attn}", file=sys.stderr)
warm = min(args.seq, 256)
step(model, opt, torch.randint(0, V, (1, warm)))
ids = torch.randint(0, V, (1, args.seq))
t0 = time.perf_counter()
loss = step(model, opt, ids)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "tokens_per_second": args.seq / seconds, "loss": loss,
                  "seq": args.seq, "attn": args.attn, "threads": torch.get_num_threads()}))
