#!/usr/bin/env python3
"""Write golden NF4 (QLoRA 4-bit NormalFloat, double quantisation) tensors.

Run from the repository root:

    /usr/bin/python3 scripts/golden/make_golden_nf4.py [--out test/fixtures/golden]

Writes nf4.safetensors. The quantiser here is written in plain torch from the published
description of the format (QLoRA, Dettmers et al. 2023, arXiv 2305.14314, and the
bitsandbytes functions it names: create_normal_map, create_dynamic_map, quantize_4bit
with quant_type="nf4" and compress_statistics=True, quantize_blockwise); bitsandbytes
itself is not needed. The algorithm:

  * flatten; blocks of 64 values (the last block may be shorter and uses its own absmax);
  * per block absmax = max|x| (float32); scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1)
    in float32; the code is the nearest NF4 value, found as the number of float32
    midpoints (c[j] + c[j+1]) / 2 strictly below `scaled` (a value on a midpoint takes the
    lower code; torch.bucketize with right=False, and bitsandbytes' CUDA decision tree
    `x > threshold`);
  * two codes per byte, the first element in the high nibble; an odd count is padded with
    the code of 0.0 (7);
  * double quantisation of the per-block absmax values: offset = their mean (summed left to
    right in float64, rounded to float32), centred = absmax - offset (float32), then the same
    blockwise scheme with block size 256 against the signed 8-bit dynamic map;
  * dequantisation: scale = float32(code8 * absmax2) + offset, value = float32(code4 * scale),
    every operation in float32.

Tensors (all names prefixed by the case name C):

  nf4_code            F32 [16]   the NF4 code book, from the normal quantiles
  dynamic_code        F32 [256]  the signed 8-bit dynamic map
  C.input             F32 shape  the tensor quantised
  C.codes             U8  [n]    one 4-bit code per value (unpacked)
  C.packed            U8  [ceil(n/2)]
  C.absmax            F32 [nb]   per-64-block absmax (before double quantisation)
  C.scale_codes       U8  [nb]   8-bit codes of the centred absmax values
  C.scale_absmax      F32 [ceil(nb/256)]
  C.scale_offset      F32 []     the mean subtracted before the 8-bit quantisation
  C.scales            F32 [nb]   dequantised absmax values
  C.dequantized       F32 shape  dequantised tensor

Cases: `main` [136, 128] (272 blocks, so two 256-blocks of scales, the second partial),
with hand-made blocks (all zero; values exactly on every NF4 midpoint and one float32 ulp
above each; a negative absmax; a constant block; tiny values; outliers); `odd` [13, 77] (1001 values: a
partial last block and a padding nibble); `one` [1, 37] (a single partial block).
Metadata: generator, torch, note, cases (JSON). Deterministic (seeded generator, one
thread); exits non-zero if a self-check fails.
"""

import math
import os
import sys

sys.dont_write_bytecode = True  # keep scripts/golden free of __pycache__

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_golden import check, table_main  # noqa: E402

GENERATOR = "scripts/golden/make_golden_nf4.py"
F32 = torch.float32

# bitsandbytes' hard-coded NF4 table (functional.get_4bit_type("nf4")), to check ours against
PUBLISHED_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]
# thresholds of bitsandbytes' CUDA dQuantizeNF4 decision tree (float literals), ascending
CUDA_NF4_THRESHOLDS = [
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]


def normal_map(offset=0.9677083):
    """NF4: 9 positive and 7 negative quantiles of N(0,1) plus an exact 0, scaled to [-1, 1]."""
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())  # 8 positive
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())  # 7 negative
    v = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).to(F32)
    v = v.sort().values
    return v / v.max()


def dynamic_map():
    """Signed 8-bit dynamic map: for exponent i = 0..6, 2^i + 1 linearly spaced fractions in
    [0.1, 1], their pairwise means times 10^(i-6), both signs; then 0 and 1."""
    vals = []
    for i in range(7):
        edges = torch.linspace(0.1, 1, 2 ** i + 1, dtype=F32)
        centres = (edges[:-1] + edges[1:]) / 2.0
        vals += (10.0 ** (i - 6) * centres).tolist()
        vals += (-(10.0 ** (i - 6)) * centres).tolist()
    vals += [0.0, 1.0]
    assert len(vals) == 256
    return torch.tensor(sorted(vals), dtype=F32)


def blockwise(x, code, block):
    """x: float32 [n] -> (codes u8 [n], absmax f32 [nb]) under the scheme of the docstring."""
    n = x.numel()
    nb = -(-n // block)
    padded = torch.zeros(nb * block, dtype=F32)
    padded[:n] = x  # zeros do not change a block's absmax
    blocks = padded.view(nb, block)
    absmax = blocks.abs().amax(dim=1)
    inv = 1.0 / absmax.clamp(min=1e-38)
    scaled = (blocks * inv[:, None]).clamp(-1, 1).reshape(-1)[:n]
    mids = (code[:-1] + code[1:]) / 2
    codes = torch.bucketize(scaled, mids, right=False)
    return codes.to(torch.uint8), absmax, scaled


def pack(codes):
    c = codes.to(torch.int32)
    if c.numel() % 2:
        c = torch.cat([c, torch.tensor([7], dtype=torch.int32)])
    return ((c[0::2] << 4) | c[1::2]).to(torch.uint8)


def unpack(packed, n):
    p = packed.to(torch.int32)
    out = torch.stack([p >> 4, p & 15], dim=1).reshape(-1)[:n]
    return out.to(torch.uint8)


def quantize_nf4(x, nf4, dyn):
    flat = x.reshape(-1).to(F32)
    codes, absmax, scaled = blockwise(flat, nf4, 64)
    total = 0.0
    for a in absmax.tolist():  # left to right in float64
        total += a
    offset = torch.tensor(total / absmax.numel(), dtype=F32)
    centred = absmax - offset
    scale_codes, scale_absmax, _ = blockwise(centred, dyn, 256)
    scales = dyn[scale_codes.long()] * scale_absmax.repeat_interleave(256)[: absmax.numel()] + offset
    deq = (nf4[codes.long()] * scales.repeat_interleave(64)[: flat.numel()]).reshape(x.shape)
    return dict(codes=codes, packed=pack(codes), absmax=absmax, scale_codes=scale_codes,
                scale_absmax=scale_absmax, scale_offset=offset, scales=scales, dequantized=deq), scaled


def make_main(nf4, g):
    x = torch.randn(136 * 128, generator=g, dtype=torch.float64).to(F32) * 0.02
    mids = (nf4[:-1] + nf4[1:]) / 2
    blk = lambda b: slice(64 * b, 64 * b + 64)  # noqa: E731
    x[blk(3)] = 0.0  # all zero: absmax 0, every code 7, dequantised 0
    tie = torch.zeros(64, dtype=F32)  # absmax 1, so x * (1/1) is exactly each midpoint
    tie[0] = 1.0
    tie[1:16] = mids
    tie[16:31] = torch.nextafter(mids, torch.ones_like(mids))  # one float32 ulp above: the upper code
    tie[31] = -1.0
    x[blk(5)] = tie
    neg = torch.randn(64, generator=g, dtype=torch.float64).to(F32) * 0.01
    neg[17] = -0.05  # the absmax is a negative value: code 0
    x[blk(7)] = neg
    x[blk(9)] = 0.0123  # constant: every value at +1 (code 15)
    x[blk(11)] = torch.randn(64, generator=g, dtype=torch.float64).to(F32) * 1e-30
    x[blk(13)][5] = 0.7  # an outlier raising one block's absmax
    x[blk(260)][60] = -1.3
    return x.reshape(136, 128), mids


def check_case(name, x, r, scaled, nf4, dyn):
    n = x.numel()
    half4 = float((nf4[1:] - nf4[:-1]).max()) / 2
    half8 = float((dyn[1:] - dyn[:-1]).max()) / 2
    check(torch.equal(unpack(r["packed"], n), r["codes"]), "%s: packed bytes unpack to the codes (first value in the high nibble)" % name)
    thr = torch.tensor(CUDA_NF4_THRESHOLDS, dtype=F32)
    tree = (scaled[:, None] > thr[None, :]).sum(dim=1).to(torch.uint8)
    check(torch.equal(tree, r["codes"]), "%s: codes equal bitsandbytes' CUDA decision tree (x > threshold)" % name)
    dist = (scaled.double()[:, None] - nf4.double()[None, :]).abs()
    mids = ((nf4[:-1] + nf4[1:]) / 2).double()
    away = (scaled.double()[:, None] - mids[None, :]).abs().min(dim=1).values > 1e-6
    brute = dist.argmin(dim=1).to(torch.uint8)
    check(torch.equal(brute[away], r["codes"][away]), "%s: codes are the nearest code away from midpoints (%d of %d values)" % (name, int(away.sum()), n))
    a = r["absmax"].double()
    s = r["scales"].double()
    b2 = r["scale_absmax"].double().repeat_interleave(256)[: a.numel()]
    err8 = (a - s).abs()
    check(bool((err8 <= half8 * b2 + 1e-6 * a.abs().max()).all()), "%s: scale error <= half the largest 8-bit gap x absmax2 (max %.3g)" % (name, float(err8.max())))
    bound = half4 * a + err8 + 1e-6 * a
    err = (x.reshape(-1).double() - r["dequantized"].reshape(-1).double()).abs()
    per_block = torch.zeros(a.numel(), dtype=torch.float64)
    for b in range(a.numel()):
        per_block[b] = err[64 * b: 64 * b + 64].max()
    check(bool((per_block <= bound).all()), "%s: every value within half the largest NF4 gap x absmax + scale error (worst ratio %.3f)" % (name, float((per_block / bound.clamp(min=1e-300)).max())))


def build():
    g = torch.Generator().manual_seed(4)
    nf4 = normal_map()
    check(nf4.tolist() == torch.tensor(PUBLISHED_NF4, dtype=F32).tolist(), "NF4 code book from the normal quantiles equals bitsandbytes' published table exactly")
    mids = (nf4[:-1] + nf4[1:]) / 2
    check(mids.tolist() == torch.tensor(CUDA_NF4_THRESHOLDS, dtype=F32).tolist(), "float32 NF4 midpoints equal the CUDA decision-tree thresholds")
    dyn = dynamic_map()
    exact = []
    for i in range(7):
        k = 2 ** i
        exact += [10.0 ** (i - 6) * (0.1 + 0.9 * (j + 0.5) / k) for j in range(k)]
    exact = torch.tensor(sorted(exact + [-e for e in exact] + [0.0, 1.0]), dtype=torch.float64)
    rel = ((dyn.double() - exact).abs() / exact.abs().clamp(min=1e-300)).max()
    check(float(rel) < 2e-7 and bool((dyn[1:] > dyn[:-1]).all()) and float(dyn[-1]) == 1.0 and float(dyn.min()) > -1,
          "dynamic map: 256 sorted values in (-1, 1], within float32 rounding (< 2e-7) of the exact formula (max rel %.2g)" % float(rel))
    tensors = {"nf4_code": nf4, "dynamic_code": dyn}
    x_main, _ = make_main(nf4, g)
    cases = [
        ("main", x_main),
        ("odd", (torch.randn(13 * 77, generator=g, dtype=torch.float64) * 0.05).to(F32).reshape(13, 77)),
        ("one", (torch.randn(37, generator=g, dtype=torch.float64) * 3).to(F32).reshape(1, 37)),
    ]
    meta = []
    for name, x in cases:
        r, scaled = quantize_nf4(x, nf4, dyn)
        check_case(name, x, r, scaled, nf4, dyn)
        if name == "main":
            tie_codes = r["codes"][64 * 5: 64 * 5 + 31].tolist()
            check(tie_codes == [15] + list(range(15)) + list(range(1, 16)) and r["codes"][64 * 5 + 31].item() == 0,
                  "main: a value exactly on a midpoint takes the lower code, one ulp above it the upper")
            check(bool((r["codes"][64 * 3: 64 * 4] == 7).all()) and float(r["dequantized"].reshape(-1)[64 * 3: 64 * 4].abs().max()) == 0,
                  "main: an all-zero block has code 7 and dequantises to 0")
            check(r["scale_absmax"].numel() == 2, "main: 272 blocks give two 256-blocks of scales")
        if x.numel() % 2:
            check(int(r["packed"][-1]) & 15 == 7, "%s: the padding nibble is the code of 0" % name)
        tensors["%s.input" % name] = x
        for k, v in r.items():
            tensors["%s.%s" % (name, k)] = v
        meta.append({"name": name, "shape": list(x.shape), "n": x.numel(), "blocks": r["absmax"].numel()})
    return tensors, meta


def main():
    return table_main(__doc__.split("\n")[0], GENERATOR, "nf4.safetensors", "float32 arithmetic throughout, as the format defines it", build)


if __name__ == "__main__":
    sys.exit(main())
