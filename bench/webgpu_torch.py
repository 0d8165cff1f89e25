#!/usr/bin/env python3
"""The PyTorch side of bench/webgpu.ts: the same LongLoRA training step on the same GPU.

A ~1B Llama (TinyLlama-1.1B shape: 22 layers, hidden 2048, MLP 5632, 32 query / 4 kv heads,
vocab 32000), LoRA r=8 / alpha 16 on q, k, v, o with trainable embeddings and norms, the
frozen base in bf16 and trainable weights in f32 under bf16 autocast (the usual mixed
precision), S²-Attn as in the official code (half of the heads rolled by -G/2, causal
attention inside groups of G = N/4 through scaled_dot_product_attention, i.e. PyTorch's
best attention kernel for the GPU), activation checkpointing per layer, gradient
clipping at 1.0 and fused AdamW; one sequence of --seq tokens per step.

Prints progress to stderr and, as its last stdout line, JSON:
{"tokens_per_second": ..., "step_seconds": ..., "device": ..., "seq": ...}

    python3 bench/webgpu_torch.py --seq 8192 [--steps 3] [--smoke]

--smoke uses a tiny model (and runs on the CPU when there is no GPU); its timing means nothing.
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
ap.add_argument("--seq", type=int, default=8192)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--smoke", action="store_true")
args = ap.parse_args()

cuda = torch.cuda.is_available()
dev = torch.device("cuda" if cuda else "cpu")
base_dtype = torch.bfloat16 if cuda else torch.float32
if args.smoke:
    V, C, I, L, H, HKV = 512, 128, 352, 2, 4, 2
else:
    V, C, I, L, H, HKV = 32000, 2048, 5632, 22, 32, 4
D = C // H
N = args.seq
G = N // 4
EPS = 1e-5
torch.manual_seed(0)


class LoRALinear(nn.Module):
    """y = x·Wᵀ + (alpha/r)·(x·Aᵀ)·Bᵀ with W frozen (bf16), A and B trainable (f32)."""

    def __init__(self, fin, fout, r=8, alpha=16):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin, dtype=base_dtype) * 0.02, requires_grad=False)
        self.A = nn.Parameter(torch.empty(r, fin))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(fout, r))
        self.scale = alpha / r

    def forward(self, x):
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.A), self.B) * self.scale


class Frozen(nn.Module):
    def __init__(self, fin, fout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin, dtype=base_dtype) * 0.02, requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS) * self.weight).to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def attend(q, k, v):
    """Causal attention over [b, H, n, D]."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    n = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool, device=q.device), 1), float("-inf"))
    return s.softmax(-1) @ v


def s2_attention(q, k, v):
    """q, k, v [B, N, H, D] (kv already expanded): the official shifted sparse attention."""
    b = q.shape[0]

    def shift(x, by):
        return torch.cat([x[:, :, : H // 2], x[:, :, H // 2:].roll(by, dims=1)], dim=2)

    def groups(x):  # [B, N, H, D] → [B·N/G, H, G, D]
        return x.reshape(b, N // G, G, H, D).transpose(2, 3).reshape(b * N // G, H, G, D)

    o = attend(groups(shift(q, -G // 2)), groups(shift(k, -G // 2)), groups(shift(v, -G // 2)))
    o = o.reshape(b, N // G, H, G, D).transpose(2, 3).reshape(b, N, H, D)
    return shift(o, G // 2)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(C), RMSNorm(C)
        self.q, self.k, self.v = LoRALinear(C, C), LoRALinear(C, HKV * D), LoRALinear(C, HKV * D)
        self.o = LoRALinear(C, C)
        self.gate, self.up, self.down = Frozen(C, I), Frozen(C, I), Frozen(I, C)

    def forward(self, x, cos, sin):
        h = self.ln1(x)
        b = x.shape[0]
        q = self.q(h).view(b, N, H, D)
        k = self.k(h).view(b, N, HKV, D)
        v = self.v(h).view(b, N, HKV, D)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // HKV, dim=2)
        v = v.repeat_interleave(H // HKV, dim=2)
        x = x + self.o(s2_attention(q, k, v).reshape(b, N, C))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, C)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.norm = RMSNorm(C)
        self.head = Frozen(C, V)
        inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
        ang = torch.outer(torch.arange(N).float(), inv)
        ang = torch.cat([ang, ang], dim=-1)[None, :, None, :]
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = checkpoint(layer, x, self.cos, self.sin, use_reentrant=False)
        logits = self.head(self.norm(x)).float()
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))


model = Model().to(dev)
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=2e-5, betas=(0.9, 0.95), weight_decay=0.0, **({"fused": True} if cuda else {}))
ids = torch.randint(0, V, (1, N), device=dev)
print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if cuda else 'cpu'}, "
      f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, {sum(p.numel() for p in trainable) / 1e6:.1f}M trainable",
      file=sys.stderr)


def step():
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
        loss = model(ids)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def sync():
    if cuda:
        torch.cuda.synchronize()


step()  # warm-up
sync()
times = []
for _ in range(args.steps):
    t0 = time.perf_counter()
    loss = step()
    sync()
    times.append(time.perf_counter() - t0)
times.sort()
sec = times[len(times) // 2]
print(f"N {N}: step {sec:.3f} s, {N / sec:.0f} tokens/s, loss {loss.item():.4f}"
      + (f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""), file=sys.stderr)
print(json.dumps({"tokens_per_second": N / sec, "step_seconds": sec, "device": torch.cuda.get_device_name() if cuda else "cpu", "seq": N}))
