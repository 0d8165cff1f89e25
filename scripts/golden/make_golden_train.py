#!/usr/bin/env python3
"""Write golden fixtures for the TypeScript LongLoRA trainer from a plain-torch reference.

Run from the repository root:

    /usr/bin/python3 scripts/golden/make_golden_train.py [--out test/fixtures/golden]

Writes a tiny Llama checkpoint with a short context (`tiny-llama-short/`, 8 positions)
and, for each S²-Attn form ("roll", "segmented"), a folder `train-s2-<form>/` with the
initial PEFT LoRA adapter (`adapter_init/`) and `golden.safetensors`: three optimizer
steps of LongLoRA fine-tuning at sequence length 16 (position interpolation factor 2,
LoRA on q/k/v/o, trainable embeddings and norms, gradient accumulation 2, gradient
clipping, AdamW, constant-with-warmup LR), computed in float64. Only torch, numpy and
the standard library are used. Deterministic: fixed seeds, one CPU thread, byte-identical
output across runs. Exits non-zero if any self-check fails. See README.md.
"""

import argparse
import hashlib
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # keep scripts/golden free of __pycache__

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llama_ref as ref  # noqa: E402
import make_golden as mg  # noqa: E402  (BASE_CONFIG, init_weights, check, write_json)
import st_io  # noqa: E402

GENERATOR = "scripts/golden/make_golden_train.py"
check = mg.check
CheckFailed = mg.CheckFailed

BASE_NAME = "tiny-llama-short"
FORMS = ("roll", "segmented")

# ---- the run
SEQ_LEN = 16  # N
MICRO_BATCH = 2  # B
ACCUM = 2  # micro-batches per optimizer step
STEPS = 3  # optimizer steps
GROUP_RATIO = 0.25  # G = N / 4
LORA_R = 4
LORA_ALPHA = 8
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA_B_STD = 0.02  # deliberately non-zero (PEFT initialises B to zeros)
LR = 1e-2
BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.1
WARMUP_STEPS = 2
MAX_GRAD_NORM = 1.0
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6)

SEED_BASE, SEED_ADAPTER, SEED_IDS = 3, 4, 5

ADAPTER_CONFIG = {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "r": LORA_R,
    "lora_alpha": LORA_ALPHA,
    "lora_dropout": 0.0,
    "target_modules": list(LORA_TARGETS),
    "modules_to_save": ["embed_tokens", "input_layernorm", "post_attention_layernorm", "norm"],
    "bias": "none",
    "fan_in_fan_out": False,
    "base_model_name_or_path": BASE_NAME,
    "use_rslora": False,
    "use_dora": False,
    "init_lora_weights": True,
    "inference_mode": True,
}
PEFT_PREFIX = "base_model.model."


# ------------------------------------------------------------------------ setup


def base_config():
    cfg = dict(mg.BASE_CONFIG)
    cfg["max_position_embeddings"] = 8
    cfg["rope_scaling"] = None
    return cfg


def pi_factor(cfg, target_len):
    """Official LongLoRA rule: original = max_position_embeddings × existing linear
    factor (1 if none); if target > original the linear factor is ceil(target/original),
    else no scaling (None)."""
    original = cfg["max_position_embeddings"] * ref.rope_linear_factor(cfg)
    if target_len > original:
        return float(math.ceil(target_len / original))
    return None


def trainable_names(cfg):
    """Model (HF) names of the trainable tensors, in model order."""
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        names.append(p + "input_layernorm.weight")
        for t in LORA_TARGETS:
            names.append(p + "self_attn.%s.lora_A.weight" % t)
            names.append(p + "self_attn.%s.lora_B.weight" % t)
        names.append(p + "post_attention_layernorm.weight")
    names.append("model.norm.weight")
    return names


def is_norm(name):
    return name.endswith("norm.weight")


def is_lora(name):
    return ".lora_A." in name or ".lora_B." in name


def init_adapter(cfg, base, seed):
    """float32 adapter tensors keyed by model name: lora_A ~ U(-1/√in, 1/√in) (nn.Linear's
    default Kaiming-uniform), lora_B ~ N(0, 0.02²), embed/norm copies of the base."""
    g = torch.Generator().manual_seed(seed)
    shapes = ref.param_shapes(cfg)
    out = {}
    for name in trainable_names(cfg):
        if is_lora(name):
            module = name.rsplit(".lora_", 1)[0]
            fan_out, fan_in = shapes[module + ".weight"]
            if ".lora_A." in name:
                bound = 1.0 / math.sqrt(fan_in)
                u = torch.rand((LORA_R, fan_in), generator=g, dtype=torch.float32)
                out[name] = (u * 2.0 - 1.0) * bound
            else:
                out[name] = torch.randn((fan_out, LORA_R), generator=g, dtype=torch.float32) * LORA_B_STD
        else:
            out[name] = base[name].clone()
    return out


def warmup_lr(k):
    """LR of the optimizer step with 0-based index k (get_constant_schedule_with_warmup)."""
    return LR * (k / max(1, WARMUP_STEPS) if k < WARMUP_STEPS else 1.0)


# ----------------------------------------------------------------------- model


def make_params(base, trainable, dtype, requires_grad):
    p = {k: v.detach().to(dtype).clone() for k, v in base.items()}
    for k, v in trainable.items():
        t = v.detach().to(dtype).clone()
        if requires_grad:
            t.requires_grad_(True)
        p[k] = t
    return p


def logits_of(p, cfg, ids, form, G):
    return ref.forward_lora(p, cfg, ids, LORA_ALPHA / LORA_R, form, G)


def loss_of(p, cfg, ids, form, G):
    return ref.causal_lm_loss(logits_of(p, cfg, ids, form, G), ids)  # labels = input_ids


# -------------------------------------------------------------------- training


def train(form, cfg, base, adapter, ids, G):
    """The LongLoRA run in float64 with a hand-written AdamW; every optimizer step is
    cross-checked against torch.nn.utils.clip_grad_norm_ + torch.optim.AdamW + LambdaLR."""
    names = trainable_names(cfg)
    p = make_params(base, adapter, torch.float64, requires_grad=True)
    check(all(p[k].requires_grad == (k in adapter) for k in p),
          "[%s] exactly the LoRA, embedding and norm tensors require grad" % form)
    m = {n: torch.zeros_like(p[n]) for n in names}
    v = {n: torch.zeros_like(p[n]) for n in names}

    # torch's pipeline on a shadow copy, fed the same raw gradients
    shadow = {n: p[n].detach().clone().requires_grad_(True) for n in names}
    opt = torch.optim.AdamW(
        [
            {"params": [shadow[n] for n in names if not is_norm(n)], "weight_decay": WEIGHT_DECAY},
            {"params": [shadow[n] for n in names if is_norm(n)], "weight_decay": 0.0},
        ],
        lr=LR, betas=BETAS, eps=ADAM_EPS, foreach=False, maximize=False, amsgrad=False,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: k / max(1, WARMUP_STEPS) if k < WARMUP_STEPS else 1.0)

    losses, norms, lrs, snaps, clipped = [], [], [], [], []
    grad_step1 = None
    for k in range(STEPS):
        for n in names:
            p[n].grad = None
        for j in range(ACCUM):
            loss = loss_of(p, cfg, ids[k * ACCUM + j], form, G)
            (loss / ACCUM).backward()
            losses.append(float(loss))
        grads = {n: p[n].grad.detach().clone() for n in names}
        if k == 0:
            grad_step1 = {n: g.clone() for n, g in grads.items()}

        total = float(torch.stack([g.pow(2).sum() for g in grads.values()]).sum().sqrt())
        norms.append(total)
        did_clip = total > MAX_GRAD_NORM
        clipped.append(did_clip)
        if did_clip:
            coef = MAX_GRAD_NORM / (total + CLIP_EPS)
            grads = {n: g * coef for n, g in grads.items()}

        lr = warmup_lr(k)
        lrs.append(lr)
        t = k + 1
        b1, b2 = BETAS
        with torch.no_grad():
            for n in names:
                g = grads[n]
                if not is_norm(n):
                    p[n].mul_(1.0 - lr * WEIGHT_DECAY)
                m[n] = b1 * m[n] + (1.0 - b1) * g
                v[n] = b2 * v[n] + (1.0 - b2) * g * g
                m_hat = m[n] / (1.0 - b1 ** t)
                v_hat = v[n] / (1.0 - b2 ** t)
                p[n].sub_(lr * m_hat / (v_hat.sqrt() + ADAM_EPS))
        snaps.append({n: p[n].detach().clone() for n in names})

        # ---- torch cross-check of this step
        for n in names:
            shadow[n].grad = p[n].grad.detach().clone()  # raw accumulated gradient
        tn = float(torch.nn.utils.clip_grad_norm_([shadow[n] for n in names], MAX_GRAD_NORM))
        check(abs(tn - total) <= 1e-13 * total,
              "[%s] step %d: grad norm %.15f equals clip_grad_norm_'s %.15f" % (form, t, total, tn))
        gdiff = max(float((shadow[n].grad - grads[n]).abs().max()) for n in names)
        check(gdiff <= 1e-15, "[%s] step %d: clipped grads equal clip_grad_norm_'s (|diff| %.1e)"
              % (form, t, gdiff))
        tlr = opt.param_groups[0]["lr"]
        check(abs(tlr - lr) <= 1e-18 and opt.param_groups[1]["lr"] == tlr,
              "[%s] step %d: lr %.4g equals LambdaLR's %.4g" % (form, t, lr, tlr))
        opt.step()
        sched.step()
        pdiff = max(float((shadow[n].detach() - p[n].detach()).abs().max()) for n in names)
        check(pdiff <= 1e-14, "[%s] step %d: hand AdamW equals torch.optim.AdamW (max |diff| %.1e)"
              % (form, t, pdiff))
        moved = max(float((snaps[-1][n] - (snaps[-2][n] if k else adapter[n].double())).abs().max())
                    for n in names)
        if lr == 0.0:
            check(moved == 0.0, "[%s] step %d: lr 0 leaves the parameters unchanged" % (form, t))
        else:
            check(moved > 0.0, "[%s] step %d: parameters moved (max |change| %.3e)" % (form, t, moved))
    return losses, norms, lrs, snaps, grad_step1, clipped


# ------------------------------------------------------------------ self-checks


def explicit_segment_mask(H, N, G):
    """Independent: enumerate the groups as intervals and mark causal pairs inside them."""
    mask = torch.zeros(H, N, N, dtype=torch.bool)
    for h in range(H):
        if h < H // 2:
            groups = [(s, min(s + G, N)) for s in range(0, N, G)]
        else:
            groups = [(0, G // 2)] + [(s, min(s + G, N)) for s in range(G // 2, N, G)]
        for lo, hi in groups:
            for i in range(lo, hi):
                for j in range(lo, i + 1):
                    mask[h, i, j] = True
    return mask


def explicit_roll_mask(H, N, G):
    """Independent: who each token attends to under the roll form. Token t of a shifted
    head sits at position (t - G/2) mod N after the roll; same group of G positions and
    not a later position."""
    mask = torch.zeros(H, N, N, dtype=torch.bool)
    s = G // 2
    for h in range(H):
        for i in range(N):
            for j in range(N):
                pi, pj = ((i - s) % N, (j - s) % N) if h >= H // 2 else (i, j)
                mask[h, i, j] = (pi // G == pj // G) and pj <= pi
    return mask


def dependency(form, H, N, D, G):
    """dep[h, i, j]: does output (h, i) of the attention core change when key/value j
    change? Measured by perturbation on random float64 inputs."""
    g = torch.Generator().manual_seed(99)
    q, k, v = (torch.randn(1, H, N, D, generator=g, dtype=torch.float64) for _ in range(3))
    out = ref.s2_attention_core(q, k, v, form, G)
    dep = torch.zeros(H, N, N, dtype=torch.bool)
    for j in range(N):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, j] += torch.randn(1, H, D, generator=g, dtype=torch.float64)
        v2[:, :, j] += torch.randn(1, H, D, generator=g, dtype=torch.float64)
        out2 = ref.s2_attention_core(q, k2, v2, form, G)
        dep[:, :, j] = (out2 - out).abs().amax(-1)[0] > 1e-12
    return dep, out


def attention_checks(cfg, G):
    print("== attention forms (N=%d, G=%d)" % (SEQ_LEN, G))
    H, D, N = cfg["num_attention_heads"], ref.head_dim(cfg), SEQ_LEN
    mask = ref.s2_segment_mask(H, N, G)
    check(torch.equal(mask, explicit_segment_mask(H, N, G)),
          "segmented mask equals an independently enumerated one")
    seg2 = ref.s2_segments(H, N, G)[H // 2].tolist()
    check(seg2 == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4],
          "shifted heads' segments are [0,2),[2,6),[6,10),[10,14),[14,16)")
    dep_seg, out_seg = dependency("segmented", H, N, D, G)
    dep_roll, out_roll = dependency("roll", H, N, D, G)
    dep_dense, _ = dependency("dense", H, N, D, G)
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    check(torch.equal(dep_dense, causal.expand(H, N, N)), "dense: output depends exactly on j <= i")
    check(torch.equal(dep_seg, mask), "segmented: output depends exactly on the mask's keys")
    check(torch.equal(dep_roll, explicit_roll_mask(H, N, G)),
          "roll: output depends exactly on the independently derived roll pattern")
    future = ~causal
    check(not bool((dep_seg & future).any()), "segmented: no token depends on a later token")
    check(bool(dep_roll[H // 2, 0, N - 1]) and bool(dep_roll[H // 2, 0, N - G // 2]),
          "roll leaks: token 0 of a shifted head attends to tokens %d..%d" % (N - G // 2, N - 1))
    leak = (dep_roll & future).nonzero().tolist()
    expect = [[h, i, j] for h in range(H // 2, H) for i in range(G // 2) for j in range(N - G // 2, N)]
    check(leak == expect, "roll: the only future dependencies are tokens < G/2 on the last G/2 tokens")
    same = torch.ones(H, N, dtype=torch.bool)
    same[H // 2:, : G // 2] = False
    diff = (out_roll - out_seg).abs().amax(-1)[0]
    check(float(diff[same].max()) < 1e-14 and float(diff[~same].min()) > 1e-6,
          "roll equals segmented except shifted heads' tokens < G/2")


def model_checks(cfg, base, adapter, ids, G):
    print("== LoRA forward")
    scaling = LORA_ALPHA / LORA_R
    zero = {k: (torch.zeros_like(v) if ".lora_B." in k else v) for k, v in adapter.items()}
    p0 = make_params(base, zero, torch.float64, False)
    plain = {k: p0[k] for k in base}
    a = ref.forward_lora(p0, cfg, ids[0], scaling, "dense")
    b, _ = ref.forward(plain, cfg, ids[0])
    check(float((a - b).abs().max()) < 1e-12, "B = 0, dense: forward_lora equals forward")
    p1 = make_params(base, adapter, torch.float64, False)
    merged = {k: p1[k] for k in base}
    for name in adapter:
        if ".lora_A." in name:
            module = name.rsplit(".lora_", 1)[0]
            merged[module + ".weight"] = merged[module + ".weight"] + scaling * (
                p1[module + ".lora_B.weight"] @ p1[name])
        elif not is_lora(name):
            merged[name] = p1[name]
    a = ref.forward_lora(p1, cfg, ids[0], scaling, "dense")
    b, _ = ref.forward(merged, cfg, ids[0])
    check(float((a - b).abs().max()) < 1e-12, "dense: LoRA forward equals forward with W + s·B·A merged")


def finite_difference_checks(form, cfg, base, adapter, ids, G):
    p = make_params(base, adapter, torch.float64, True)
    loss = loss_of(p, cfg, ids[0], form, G)
    loss.backward()
    probes = [
        ("model.layers.0.self_attn.q_proj.lora_A.weight", (1, 7)),
        ("model.layers.0.self_attn.o_proj.lora_B.weight", (5, 2)),
        ("model.layers.1.self_attn.k_proj.lora_B.weight", (9, 3)),
        ("model.layers.1.self_attn.v_proj.lora_A.weight", (2, 30)),
        ("model.layers.0.self_attn.k_proj.lora_A.weight", (3, 12)),
        ("model.embed_tokens.weight", (int(ids[0, 0, 3]), 4)),
        ("model.layers.1.input_layernorm.weight", (11,)),
    ]
    step = 1e-5
    with torch.no_grad():
        for name, idx in probes:
            q = {k: v.detach().clone() for k, v in p.items()}
            orig = float(q[name][idx])
            q[name][idx] = orig + step
            up = float(loss_of(q, cfg, ids[0], form, G))
            q[name][idx] = orig - step
            down = float(loss_of(q, cfg, ids[0], form, G))
            fd = (up - down) / (2 * step)
            ad = float(p[name].grad[idx])
            err = abs(fd - ad)
            check(ad != 0.0 and err <= 1e-9 + 1e-6 * abs(ad),
                  "[%s] finite difference %s%s: autograd %.10e fd %.10e (|diff| %.1e)"
                  % (form, name, list(idx), ad, fd, err))


# ------------------------------------------------------------------------ write


def sha16(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def read_back(path, tensors, meta):
    rt, rmeta = st_io.read(path)
    check(list(rt) == list(tensors) and rmeta == meta, "%s reads back (names, metadata)" % path)
    check(all(rt[k].dtype == tensors[k].dtype and torch.equal(rt[k], tensors[k]) for k in tensors),
          "%s reads back bit-exact" % path)


def write_base(out_dir, cfg, weights):
    print("== %s" % BASE_NAME)
    d = os.path.join(out_dir, BASE_NAME)
    os.makedirs(d, exist_ok=True)
    stored = {k: v.to(torch.float32).contiguous() for k, v in weights.items()}
    mg.write_json(os.path.join(d, "config.json"), cfg)
    path = os.path.join(d, "model.safetensors")
    st_io.write(path, stored, {"format": "pt"})
    read_back(path, stored, {"format": "pt"})


def write_adapter(d, cfg, adapter):
    os.makedirs(d, exist_ok=True)
    mg.write_json(os.path.join(d, "adapter_config.json"), ADAPTER_CONFIG)
    tensors = {PEFT_PREFIX + n: adapter[n].contiguous() for n in trainable_names(cfg)}
    path = os.path.join(d, "adapter_model.safetensors")
    st_io.write(path, tensors, {"format": "pt"})
    read_back(path, tensors, {"format": "pt"})


def recipe(G, factor):
    return {
        "seq_len": SEQ_LEN, "micro_batch": MICRO_BATCH, "grad_accum": ACCUM, "steps": STEPS,
        "group_size": G, "rope_factor": factor, "lora_r": LORA_R, "lora_alpha": LORA_ALPHA,
        "lr": LR, "betas": list(BETAS), "eps": ADAM_EPS, "weight_decay": WEIGHT_DECAY,
        "weight_decay_excludes": "norm weights", "warmup_steps": WARMUP_STEPS,
        "schedule": "constant_with_warmup", "max_grad_norm": MAX_GRAD_NORM,
    }


def make_form(out_dir, form, cfg_train, base, adapter, ids, G, factor):
    print("== train-s2-%s" % form)
    d = os.path.join(out_dir, "train-s2-" + form)
    os.makedirs(d, exist_ok=True)
    finite_difference_checks(form, cfg_train, base, adapter, ids, G)

    with torch.no_grad():
        p = make_params(base, adapter, torch.float64, False)
        logits0 = logits_of(p, cfg_train, ids[0], form, G)
        dense0 = logits_of(p, cfg_train, ids[0], "dense", G)
        p32 = make_params(base, adapter, torch.float32, False)
        l32 = logits_of(p32, cfg_train, ids[0], form, G)
    rel = float((l32.double() - logits0).abs().max() / logits0.abs().max())
    check(rel < 2e-5, "[%s] float32 vs float64 logits0: max rel diff %.2e" % (form, rel))
    sd = float((logits0 - dense0).abs().max())
    check(sd > 1e-3, "[%s] S² logits differ from dense logits (max |diff| %.3e)" % (form, sd))
    h = G // 2  # tokens < G/2 see exactly their causal prefix in every head, unless leaked
    early = float((logits0[:, :h] - dense0[:, :h]).abs().max())
    if form == "segmented":
        check(early < 1e-12, "[segmented] logits of tokens < G/2 equal dense (|diff| %.1e)" % early)
    else:
        check(early > 1e-3, "[roll] logits of tokens < G/2 differ from dense: the leak (|diff| %.3e)" % early)
    std = float(logits0.std())
    check(0.8 <= std <= 4.0, "[%s] logits not degenerate (std %.3f)" % (form, std))

    losses, norms, lrs, snaps, grad1, clipped = train(form, cfg_train, base, adapter, ids, G)
    check(abs(losses[0] - float(ref.causal_lm_loss(logits0, ids[0]))) < 1e-12,
          "[%s] losses[0] is the loss of logits0" % form)

    write_adapter(os.path.join(d, "adapter_init"), cfg_train, adapter)
    names = trainable_names(cfg_train)
    golden = {
        "input_ids": ids,
        "rope_factor": torch.tensor(factor, dtype=torch.float64),
        "lrs": torch.tensor(lrs, dtype=torch.float64),
        "losses": torch.tensor(losses, dtype=torch.float64),
        "grad_norms": torch.tensor(norms, dtype=torch.float64),
        "logits0": logits0,
        "dense_logits0": dense0,
    }
    for n in names:
        golden["grad_step1." + n] = grad1[n]
    for k, snap in enumerate(snaps):
        for n in names:
            golden["step%d.%s" % (k + 1, n)] = snap[n]
    meta = {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "note": "computed in float64",
        "form": form,
        "base_model": BASE_NAME,
        "adapter": "adapter_init",
        "recipe": json.dumps(recipe(G, factor), sort_keys=True),
    }
    path = os.path.join(d, "golden.safetensors")
    st_io.write(path, golden, meta)
    read_back(path, golden, meta)
    return losses, norms, lrs, clipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join("test", "fixtures", "golden"))
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    cfg = base_config()
    base = mg.init_weights(cfg, seed=SEED_BASE)
    adapter = init_adapter(cfg, base, seed=SEED_ADAPTER)
    g = torch.Generator().manual_seed(SEED_IDS)
    ids = torch.randint(0, cfg["vocab_size"], (STEPS * ACCUM, MICRO_BATCH, SEQ_LEN), generator=g,
                        dtype=torch.int64)

    factor = pi_factor(cfg, SEQ_LEN)
    check(factor == 2.0, "position interpolation: ceil(16 / 8) = %r" % factor)
    check(pi_factor(cfg, 8) is None and pi_factor(dict(cfg, rope_scaling={"type": "linear", "factor": 2.0}), 16) is None,
          "position interpolation: no scaling when target <= original length")
    cfg_train = dict(cfg)
    cfg_train["rope_scaling"] = {"type": "linear", "factor": factor}
    G = int(SEQ_LEN * GROUP_RATIO)
    check(G == 4, "group size G = N/4 = 4")
    check(sum(adapter[n].numel() for n in adapter) == 5024, "5024 trainable values")

    attention_checks(cfg_train, G)
    model_checks(cfg_train, base, adapter, ids, G)
    write_base(args.out, cfg, base)
    results = {}
    for form in FORMS:
        results[form] = make_form(args.out, form, cfg_train, base, adapter, ids, G, factor)
    a = os.path.join(args.out, "train-s2-%s" % FORMS[0], "adapter_init", "adapter_model.safetensors")
    b = os.path.join(args.out, "train-s2-%s" % FORMS[1], "adapter_init", "adapter_model.safetensors")
    check(sha16(a) == sha16(b), "both forms start from the same adapter_init bytes")

    print("\nfiles:")
    total = 0
    for root, _, files in sorted(os.walk(args.out)):
        rel = os.path.relpath(root, args.out)
        if not (rel.startswith(BASE_NAME) or rel.startswith("train-s2-")):
            continue
        for fn in sorted(files):
            path = os.path.join(root, fn)
            total += os.path.getsize(path)
            print("  %-72s %8d  %s" % (path, os.path.getsize(path), sha16(path)))
    print("  total %d bytes" % total)
    for form, (losses, norms, lrs, clipped) in results.items():
        print("\n%s:" % form)
        print("  losses     " + " ".join("%.12f" % x for x in losses))
        print("  grad_norms " + " ".join("%.12f" % x for x in norms))
        print("  clipped    " + " ".join(str(c) for c in clipped))
        print("  lrs        " + " ".join("%g" % x for x in lrs))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print("SELF-CHECK FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
