#!/usr/bin/env python3
"""Write golden RoPE-scaling tables for the TypeScript engine.

Run from the repository root:

    /usr/bin/python3 scripts/golden/make_golden_rope.py [--out test/fixtures/golden]

Writes rope.safetensors: for every case below, the inverse frequencies, the attention
factor and the cos/sin tables that a Hugging Face Llama computes for one `rope_scaling`
block. The formulas are re-implemented here in torch float64 from the semantics of
transformers' `modeling_rope_utils.py` (`_compute_linear_scaling_rope_parameters`,
`_compute_dynamic_ntk_parameters`, `_compute_yarn_parameters`,
`_compute_llama3_parameters`, and `RotaryEmbeddingConfigMixin.standardize_rope_params` for
the defaults); transformers itself is not needed (and computes in float32).

Tensors, for each case name C (shapes use D = head dim, N = rows):

  C.inv_freq          F64 [D/2]    inverse frequencies (dynamic: at seq_len = offset + N)
  C.attention_factor  F64 []       the factor HF multiplies cos and sin by (yarn; else 1)
  C.cos, C.sin        F64 [N, D/2] attention_factor * cos/sin(p * inv_freq[i]),
                                   p = offset .. offset + N - 1 (our [N, D/2] layout; HF
                                   repeats the half: cat(freqs, freqs))

Metadata: `cases` (JSON list of {name, D, theta, max_position_embeddings, key, block,
offset, N}, where `key` is the config.json key the block sits under), `generator`,
`torch`, `note`. Only torch, numpy (through st_io) and the standard library are used; there
is no randomness, so the output is byte-identical across runs of the same torch build.
Exits non-zero if a self-check fails.
"""

import math
import os
import sys

sys.dont_write_bytecode = True  # keep scripts/golden free of __pycache__

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_golden import check, table_main  # noqa: E402

GENERATOR = "scripts/golden/make_golden_rope.py"
F64 = torch.float64

# (name, D, theta, max_position_embeddings, key, block, offset, N)
CASES = [
    # D = 8, small contexts so every regime shows up within a few hundred positions
    ("d8_default", 8, 10000.0, 64, "rope_scaling", None, 0, 80),
    ("d8_linear", 8, 10000.0, 64, "rope_scaling", {"type": "linear", "factor": 2.0}, 0, 80),
    ("d8_dynamic_below", 8, 10000.0, 64, "rope_scaling", {"type": "dynamic", "factor": 2.0}, 0, 48),
    ("d8_dynamic_at", 8, 10000.0, 64, "rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, 0, 64),
    ("d8_dynamic_above", 8, 10000.0, 64, "rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, 0, 160),
    ("d8_dynamic_offset", 8, 10000.0, 64, "rope_scaling", {"rope_type": "dynamic", "factor": 4.0}, 150, 10),
    ("d8_yarn", 8, 10000.0, 64, "rope_scaling",
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}, 0, 256),
    ("d8_yarn_defaults", 8, 10000.0, 64, "rope_scaling", {"type": "yarn", "factor": 2.0}, 100, 40),
    ("d8_yarn_no_truncate", 8, 10000.0, 64, "rope_scaling",
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "truncate": False,
      "beta_fast": 16.0, "beta_slow": 2.0}, 0, 256),
    ("d8_llama3", 8, 10000.0, 512, "rope_scaling",
     {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 64}, 0, 512),
    # D = 128, the numbers of real checkpoints. Table rows stay at moderate positions: an
    # angle p * inv_freq carries p times the rounding of inv_freq, and `base ** x` may differ
    # by an ulp between torch and V8, so at p ~ 10^4 two correct float64 implementations
    # can already disagree by ~1e-12 in cos/sin. (The frequencies of yarn and llama3 do not
    # depend on the position; dynamic's do, through offset + N, hence its row at 8191.)
    ("d128_linear_llama2", 128, 10000.0, 4096, "rope_scaling", {"type": "linear", "factor": 8.0}, 1000, 16),
    ("d128_dynamic_llama2", 128, 10000.0, 4096, "rope_scaling", {"type": "dynamic", "factor": 2.0}, 8184, 8),
    ("d128_yarn_llama2", 128, 10000.0, 4096, "rope_scaling",
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}, 4092, 8),
    ("d128_yarn_mscale", 128, 10000.0, 163840, "rope_scaling",
     {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32,
      "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0}, 2000, 8),
    ("d128_yarn_attention_factor", 128, 150000.0, 131072, "rope_parameters",
     {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0,
      "beta_slow": 1.0, "truncate": False, "attention_factor": 1.25, "rope_theta": 150000.0}, 500, 8),
    ("d128_llama3_1", 128, 500000.0, 131072, "rope_parameters",
     {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192, "rope_theta": 500000.0}, 1000, 8),
]


# ----------------------------------------------------------------------- HF semantics


def resolve(theta, max_pos, block):
    """The rope type and its parameters with HF's defaults filled in (standardize_rope_params)."""
    p = dict(block or {})
    kind = p.get("rope_type", p.get("type", "default"))
    p["rope_theta"] = p.get("rope_theta", theta)
    if kind in ("yarn", "llama3"):
        p.setdefault("original_max_position_embeddings", max_pos)
    return kind, p


def plain_inv_freq(D, base):
    return 1.0 / (base ** (torch.arange(0, D, 2, dtype=F64) / D))


def hf_rope(D, theta, max_pos, block, seq_len):
    """(inv_freq [D/2] float64, attention_factor) as HF's rope init functions define them."""
    kind, p = resolve(theta, max_pos, block)
    base = p["rope_theta"]
    if kind == "default":
        return plain_inv_freq(D, base), 1.0
    if kind == "linear":
        return plain_inv_freq(D, base) / p["factor"], 1.0
    if kind == "dynamic":
        # base grows with the current length once it passes max_position_embeddings
        L = max(seq_len, max_pos)
        f = p["factor"]
        scaled = base * ((f * L / max_pos) - (f - 1)) ** (D / (D - 2))
        return plain_inv_freq(D, scaled), 1.0
    if kind == "yarn":
        return yarn(D, base, max_pos, p)
    if kind == "llama3":
        return llama3(D, base, p)
    raise ValueError("unknown rope type " + kind)


def yarn_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def yarn(D, base, max_pos, p):
    orig = p["original_max_position_embeddings"]
    f = p.get("factor")
    if f is None:
        f = max_pos / orig
    af = p.get("attention_factor")
    if af is None:
        ms, msa = p.get("mscale"), p.get("mscale_all_dim")
        af = yarn_mscale(f, ms) / yarn_mscale(f, msa) if (ms and msa) else yarn_mscale(f)
    beta_fast = p.get("beta_fast") or 32
    beta_slow = p.get("beta_slow") or 1

    def corr_dim(rotations):  # the dimension whose wavelength fits `rotations` times in orig
        return (D * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = corr_dim(beta_fast), corr_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, D - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(D // 2, dtype=F64) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, D, 2, dtype=F64) / D)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (f * pos_freqs)
    keep = 1 - ramp  # share of the extrapolated (unscaled) frequency
    return interpolation * (1 - keep) + extrapolation * keep, af


def llama3(D, base, p):
    inv = plain_inv_freq(D, base)
    f, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    orig = p["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > orig / lo, inv / f, inv)
    smooth = (orig / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / f + smooth * out
    medium = (wavelen >= orig / hi) & (wavelen <= orig / lo)
    return torch.where(medium, smoothed, out), 1.0


def tables(inv, af, offset, N):
    pos = torch.arange(offset, offset + N, dtype=F64)
    ang = torch.outer(pos, inv)  # (N, D/2)
    return af * torch.cos(ang), af * torch.sin(ang)


# ----------------------------------------------------------------------- scalar twin


def scalar_inv_freq(D, theta, max_pos, block, seq_len):
    """A per-element math-module version of the same formulas, for the self-check."""
    kind, p = resolve(theta, max_pos, block)
    base = p["rope_theta"]
    out = []
    for i in range(D // 2):
        e = 2 * i / D
        if kind == "default":
            v = base ** -e
        elif kind == "linear":
            v = base ** -e / p["factor"]
        elif kind == "dynamic":
            L = max(seq_len, max_pos)
            v = (base * (p["factor"] * L / max_pos - p["factor"] + 1) ** (D / (D - 2))) ** -e
        elif kind == "yarn":
            v = None
        else:  # llama3: wavelength bands
            v0 = base ** -e
            wl = 2 * math.pi / v0
            orig = p["original_max_position_embeddings"]
            if wl < orig / p["high_freq_factor"]:
                v = v0
            elif wl > orig / p["low_freq_factor"]:
                v = v0 / p["factor"]
            else:
                s = (orig / wl - p["low_freq_factor"]) / (p["high_freq_factor"] - p["low_freq_factor"])
                v = (1 - s) * v0 / p["factor"] + s * v0
        out.append(v)
    if kind == "yarn":
        return None
    return torch.tensor(out, dtype=F64)


def max_rel(a, b):
    return ((a - b).abs() / b.abs()).max().item()


# ----------------------------------------------------------------------- main


def build():
    tensors, meta = {}, []
    for name, D, theta, max_pos, key, block, offset, N in CASES:
        print(name)
        seq_len = offset + N
        inv, af = hf_rope(D, theta, max_pos, block, seq_len)
        cos, sin = tables(inv, af, offset, N)
        kind, p = resolve(theta, max_pos, block)
        twin = scalar_inv_freq(D, theta, max_pos, block, seq_len)
        if twin is not None:
            check(max_rel(inv, twin) < 1e-13, "%s: scalar twin agrees (%.1e)" % (name, max_rel(inv, twin)))
        plain = plain_inv_freq(D, p["rope_theta"])
        if kind == "dynamic" and seq_len <= max_pos:
            check(torch.equal(inv, plain), "%s: dynamic within max_position_embeddings is plain RoPE" % name)
        if kind == "dynamic" and seq_len > max_pos:
            check(bool((inv[1:] < plain[1:]).all()), "%s: dynamic beyond max_position_embeddings lowers every frequency but the first" % name)
        if kind == "yarn":
            check(abs(inv[0] / plain[0] - 1) < 1e-15, "%s: yarn keeps the highest frequency" % name)
            check(abs(inv[-1] * p["factor"] / plain[-1] - 1) < 1e-13, "%s: yarn interpolates the lowest frequency" % name)
            inv1, af1 = yarn(D, p["rope_theta"], max_pos, dict(p, factor=1.0, attention_factor=None))
            check(max_rel(inv1, plain) < 1e-15 and af1 == 1.0, "%s: yarn with factor 1 is plain RoPE" % name)
        if kind == "llama3":
            wl = 2 * math.pi / plain
            orig = p["original_max_position_embeddings"]
            hi_band, lo_band = wl < orig / p["high_freq_factor"], wl > orig / p["low_freq_factor"]
            check(torch.equal(inv[hi_band], plain[hi_band]) and torch.equal(inv[lo_band], plain[lo_band] / p["factor"])
                  and bool(hi_band.any()) and bool(lo_band.any()) and bool((~hi_band & ~lo_band).any()),
                  "%s: llama3 keeps high, divides low, blends the middle band" % name)
        check(max_rel(cos * cos + sin * sin, torch.full_like(cos, af * af)) < 1e-14, "%s: cos^2 + sin^2 = af^2" % name)
        tensors[name + ".inv_freq"] = inv
        tensors[name + ".attention_factor"] = torch.tensor(af, dtype=F64)
        tensors[name + ".cos"] = cos
        tensors[name + ".sin"] = sin
        meta.append({"name": name, "D": D, "theta": theta, "max_position_embeddings": max_pos,
                     "key": key, "block": block, "offset": offset, "N": N})
    return tensors, meta


def main():
    return table_main(__doc__.split("\n")[0], GENERATOR, "rope.safetensors", "computed in float64; cos/sin include the attention factor", build)


if __name__ == "__main__":
    sys.exit(main())
