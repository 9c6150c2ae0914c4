#!/usr/bin/env python3
"""Train, export and check the lmfs byte LM (architecture "wmlp1", see predictor/lm/SPEC.md).

Sub-commands (all take --cfg NAME, one of CONFIGS):

  train   --data DIR --ckpt FILE --seconds S [--budget TOTAL]
          quantisation-aware training on DIR/train.bin; resumes from FILE if it
          exists; the learning-rate schedule runs over TOTAL seconds of training
          in all (so a run can be split over several calls of at most 10 minutes).
  export  --ckpt FILE --model OUT.lmm [--vectors OUT.json] [--data DIR]
          writes the integer model file (SPEC.md), the test vectors computed by
          the exact integer simulation below, and (with --data) validation bpb of
          the float (fake-quant) model and of the exported integer model.

The integer simulation (IntModel) is the reference that the Go implementation
must match bit for bit.
"""
import argparse
import base64
import hashlib
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

PAD = 256            # window value before the start of a block
NROW = 257           # rows of a positional table: bytes 0..255 and PAD
LF = 5               # logits are integers in units of 2**-LF nats
EXP_LEN = 1024       # exp table entries (covers 32 nats)
EXP_ONE = 1 << 24    # exp table value at distance 0
TOTAL_BITS = 16      # frequencies sum to 2**TOTAL_BITS
BLOCK = 65536        # validation protocol: independent blocks of 64 KiB
HASH_P = 2147483647
HASH_C = 0x9E3779B1

CONFIGS = {
    # name: window N, hidden H1 (sum of tables), hidden H2, hashed orders, hash bits
    "xs": dict(N=16, H1=256, H2=128, orders=[], hbits=0),
    "s": dict(N=24, H1=384, H2=160, orders=[2, 3], hbits=12),
    "m": dict(N=32, H1=512, H2=192, orders=[2, 3, 4], hbits=12),
    "l": dict(N=32, H1=768, H2=256, orders=[2, 3, 4, 6], hbits=13),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- inputs

def windows(data, t, N, block=None):
    """Window [B, N] of int64: entry i-1 is the byte at t-i, PAD before the block start.

    data: uint8 tensor, t: int64 tensor of positions. With block, a position's
    block starts at (t // block) * block; without, at 0.
    """
    i = torch.arange(1, N + 1, device=t.device)
    p = t[:, None] - i[None, :]
    start = (t // block * block)[:, None] if block else torch.zeros_like(t)[:, None]
    w = data[p.clamp(min=0)].long()
    return torch.where(p < start, torch.full_like(w, PAD), w)


def hash_buckets(w, orders, hbits):
    """Bucket [B, K] of the hashed context of each order (SPEC.md, 'Hashed contexts')."""
    out = []
    for k in orders:
        key = torch.zeros(w.shape[0], dtype=torch.int64, device=w.device)
        for i in range(k):
            key = key + ((w[:, i] + 1) << (9 * i))
        x = key % HASH_P
        y = (x * HASH_C) & 0xFFFFFFFF
        out.append(y >> (32 - hbits))
    if not out:
        return torch.zeros(w.shape[0], 0, dtype=torch.int64, device=w.device)
    return torch.stack(out, 1)


def table_index(w, cfg):
    """Row indices [B, N+K] into the concatenated first-layer table."""
    N = cfg["N"]
    idx = w + torch.arange(N, device=w.device)[None, :] * NROW
    if cfg["orders"]:
        b = hash_buckets(w, cfg["orders"], cfg["hbits"])
        base = N * NROW + torch.arange(len(cfg["orders"]), device=w.device)[None, :] * (1 << cfg["hbits"])
        idx = torch.cat([idx, b + base], 1)
    return idx


# ---------------------------------------------------------------- model

def fq_sym(w, scale):
    """Fake-quantise to int8 (symmetric, [-127, 127]) with a straight-through gradient."""
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    return w + (q - w).detach()


def fq_act(x, alpha):
    """ReLU clipped at alpha, then fake-quantised to 0..127 steps of alpha/127 (PACT + STE)."""
    a = torch.minimum(F.relu(x), alpha)
    s = alpha.detach() / 127
    q = torch.round(a / s) * s
    return a + (q - a).detach()


class Net(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        N, H1, H2 = cfg["N"], cfg["H1"], cfg["H2"]
        rows = N * NROW + len(cfg["orders"]) * (1 << cfg["hbits"])
        self.table = torch.nn.Parameter(torch.randn(rows, H1) * (0.5 / math.sqrt(N + len(cfg["orders"]))))
        self.b1 = torch.nn.Parameter(torch.zeros(H1))
        self.w2 = torch.nn.Parameter(torch.randn(H2, H1) / math.sqrt(H1 / 2))
        self.b2 = torch.nn.Parameter(torch.zeros(H2))
        self.w3 = torch.nn.Parameter(torch.randn(256, H2) / math.sqrt(H2 / 2) * 0.5)
        self.b3 = torch.nn.Parameter(torch.zeros(256))
        self.alpha1 = torch.nn.Parameter(torch.tensor(4.0))
        self.alpha2 = torch.nn.Parameter(torch.tensor(4.0))

    def a1(self):
        return self.alpha1.clamp(min=0.05)

    def a2(self):
        return self.alpha2.clamp(min=0.05)

    def table_scale(self):
        return self.table.detach().abs().max().clamp(min=1e-8) / 127

    def row_scale(self, w):
        return w.detach().abs().amax(1, keepdim=True).clamp(min=1e-8) / 127

    def forward(self, idx, quant=True):
        t = fq_sym(self.table, self.table_scale()) if quant else self.table
        acc1 = F.embedding_bag(idx, t, mode="sum") + self.b1
        if quant:
            a1 = fq_act(acc1, self.a1())
            w2 = fq_sym(self.w2, self.row_scale(self.w2))
            a2 = fq_act(F.linear(a1, w2, self.b2), self.a2())
            w3 = fq_sym(self.w3, self.row_scale(self.w3))
        else:
            a1 = torch.minimum(F.relu(acc1), self.a1())
            a2 = torch.minimum(F.relu(F.linear(a1, self.w2, self.b2)), self.a2())
            w3 = self.w3
        return F.linear(a2, w3, self.b3)


def nparams(cfg):
    N, H1, H2 = cfg["N"], cfg["H1"], cfg["H2"]
    rows = N * NROW + len(cfg["orders"]) * (1 << cfg["hbits"])
    return rows * H1 + H1 + H2 * H1 + H2 + 256 * H2 + 256


def macs(cfg):
    """Multiply-accumulates per byte (the table sum is additions only)."""
    return cfg["H2"] * cfg["H1"] + 256 * cfg["H2"]


# ---------------------------------------------------------------- training

def load_bin(path, device):
    with open(path, "rb") as f:
        buf = f.read()
    return torch.frombuffer(bytearray(buf), dtype=torch.uint8).to(device)


def batch(data, cfg, B, gen):
    t = torch.randint(1, data.numel(), (B,), device=data.device, generator=gen)
    w = windows(data, t, cfg["N"])
    # One sample in 16 starts as if its block began k bytes before the target,
    # so the model learns the PAD contexts that open every block.
    k = torch.randint(0, cfg["N"], (B,), device=data.device, generator=gen)
    sel = torch.rand(B, device=data.device, generator=gen) < 1 / 16
    i = torch.arange(cfg["N"], device=data.device)[None, :]
    w = torch.where(sel[:, None] & (i >= k[:, None]), torch.full_like(w, PAD), w)
    return table_index(w, cfg), data[t].long()


def evaluate(net, data, cfg, n, quant=True, bs=65536):
    """Mean bits per byte of the float model over the first n positions (64 KiB block protocol)."""
    net.eval()
    tot = 0.0
    with torch.no_grad():
        for s in range(0, n, bs):
            t = torch.arange(s, min(n, s + bs), device=data.device)
            idx = table_index(windows(data, t, cfg["N"], BLOCK), cfg)
            lg = net(idx, quant).float()
            tot += F.cross_entropy(lg, data[t].long(), reduction="sum").item()
    net.train()
    return tot / n / math.log(2)


def cmd_train(a):
    cfg = CONFIGS[a.cfg]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    data = load_bin(os.path.join(a.data, "train.bin"), dev)
    val = load_bin(os.path.join(a.data, "val.bin"), dev)
    log("cfg", a.cfg, cfg, "params", nparams(cfg), "MACs/byte", macs(cfg), "train bytes", data.numel())
    torch.manual_seed(1)
    net = Net(cfg).to(dev)
    mats = [net.w2, net.w3]
    others = [p for p in net.parameters() if all(p is not m for m in mats)]
    opt = torch.optim.Adam([{"params": mats, "weight_decay": 0.0}, {"params": others}],
                           lr=a.lr, betas=(0.9, 0.98))
    gen = torch.Generator(device=dev)
    gen.manual_seed(1234)
    elapsed, step = 0.0, 0
    if os.path.exists(a.ckpt):
        st = torch.load(a.ckpt, map_location=dev)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        elapsed, step = st["elapsed"], st["step"]
        gen.manual_seed(1234 + step)
        log("resumed at step", step, "after %.0f s" % elapsed)
    budget = a.budget or a.seconds
    t0 = time.time()
    start_elapsed = elapsed
    last_ck = t0
    seen = 0
    ema = None
    while True:
        now = time.time()
        elapsed = start_elapsed + (now - t0)
        if now - t0 >= a.seconds or elapsed >= budget:
            break
        frac = elapsed / budget
        lr = a.lr * (frac / 0.03 if frac < 0.03 else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (frac - 0.03) / 0.97)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx, y = batch(data, cfg, a.bs, gen)
        loss = F.cross_entropy(net(idx), y) / math.log(2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += a.bs
        if step % 200 == 0:
            l = loss.item()
            ema = l if ema is None else 0.9 * ema + 0.1 * l
            if step % 2000 == 0:
                log("step %d elapsed %.0fs lr %.2e train bpb %.4f (%.1fM bytes/s) a1 %.2f a2 %.2f" % (
                    step, elapsed, lr, ema, seen / (time.time() - t0) / 1e6, net.alpha1.item(), net.alpha2.item()))
        if time.time() - last_ck > 120:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed, "step": step,
                        "cfg": a.cfg}, a.ckpt)
            last_ck = time.time()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed, "step": step,
                "cfg": a.cfg}, a.ckpt)
    n = min(val.numel(), a.val_bytes)
    log("done: step %d, %.0f s of %.0f, val bpb (fake-quant, first %d bytes) %.4f" % (
        step, elapsed, budget, n, evaluate(net, val, cfg, n)))


# ---------------------------------------------------------------- export and integer model

def quant_mult(m):
    """(M, S) with M in [2**30, 2**31) and M / 2**S ~= m (m > 0)."""
    assert m > 0
    e = math.floor(math.log2(m))
    S = 30 - e
    M = int(round(m * 2.0 ** S))
    if M >= 1 << 31:
        M //= 2
        S -= 1
    if not (1 <= S <= 62):
        raise ValueError("multiplier %g out of range" % m)
    return M, S


class IntModel:
    """The exact integer model of SPEC.md, computed with int64 (and float64 sums that are exact)."""

    def __init__(self, cfg, T, B1, M1, S1, W2, B2, M2, S2, W3, B3, M3, S3, EXP):
        self.cfg = cfg
        self.T, self.B1, self.M1, self.S1 = T, B1, M1, S1
        self.Tf = T.double()  # sums of at most a few hundred int8 values: exact in float64
        self.W2, self.B2, self.M2, self.S2 = W2, B2, M2, S2
        self.W3, self.B3, self.M3, self.S3 = W3, B3, M3, S3
        self.EXP = EXP

    @staticmethod
    def requant(acc, M, S):
        return (acc * M + (1 << (S - 1))) >> S

    def freqs(self, w):
        """Frequencies [B, 256] (int64, sum 2**TOTAL_BITS) for windows w [B, N]."""
        idx = table_index(w, self.cfg)
        acc1 = F.embedding_bag(idx, self.Tf, mode="sum").long() + self.B1
        a1 = self.requant(acc1, self.M1, self.S1).clamp(0, 127)
        acc2 = (a1.double() @ self.W2.double().t()).long() + self.B2
        a2 = self.requant(acc2, self.M2, self.S2).clamp(0, 127)
        acc3 = (a2.double() @ self.W3.double().t()).long() + self.B3
        L = self.requant(acc3, self.M3, self.S3).clamp(-(1 << 24), 1 << 24)
        return logit_freqs(L, self.EXP)


def logit_freqs(L, EXP):
    """Frequencies [B, 256] (int64, sum 2**TOTAL_BITS) from integer logits L [B, 256] (SPEC.md, 'Frequencies')."""
    mx = L.max(1, keepdim=True).values
    e = EXP[(mx - L).clamp(max=EXP_LEN - 1)]
    s = e.sum(1, keepdim=True)
    total = 1 << TOTAL_BITS
    f = 1 + e * (total - 256) // s
    rem = total - f.sum(1, keepdim=True)
    # argmax: the lowest symbol among the largest logits
    first = (L == mx).long().argmax(1, keepdim=True)
    f.scatter_add_(1, first, rem)
    return f


def export(net, cfg):
    """Quantises net; returns (model file bytes, IntModel)."""
    dev = net.table.device
    sT = net.table_scale().item()
    Tq = torch.clamp(torch.round(net.table.detach() / sT), -127, 127).long()
    s1 = net.a1().item() / 127
    s2 = net.a2().item() / 127
    H1, H2 = cfg["H1"], cfg["H2"]
    B1 = torch.round(net.b1.detach() / sT).long()
    M1, S1 = zip(*[quant_mult(sT / s1)] * H1)
    sw2 = net.row_scale(net.w2)[:, 0]
    W2 = torch.clamp(torch.round(net.w2.detach() / sw2[:, None]), -127, 127).long()
    B2 = torch.round(net.b2.detach() / (sw2 * s1)).long()
    M2, S2 = zip(*[quant_mult(v * s1 / s2) for v in sw2.tolist()])
    sw3 = net.row_scale(net.w3)[:, 0]
    W3 = torch.clamp(torch.round(net.w3.detach() / sw3[:, None]), -127, 127).long()
    B3 = torch.round(net.b3.detach() / (sw3 * s2)).long()
    M3, S3 = zip(*[quant_mult(v * s2 * (1 << LF)) for v in sw3.tolist()])
    EXP = [int(round(EXP_ONE * math.exp(-d / (1 << LF)))) for d in range(EXP_LEN)]
    lim = 1 << 30
    for b in (B1, B2, B3):
        b.clamp_(-lim, lim)

    def t(x):
        return torch.tensor(list(x), dtype=torch.int64, device=dev)

    im = IntModel(cfg, Tq, B1, t(M1), t(S1), W2, B2, t(M2), t(S2), W3, B3, t(M3), t(S3), t(EXP))

    out = bytearray()
    out += b"LMFSLM\x00\x01"
    hdr = [1, 1, cfg["N"], H1, H2, len(cfg["orders"]), cfg["hbits"], LF, EXP_LEN, TOTAL_BITS]
    out += struct.pack("<%dI" % len(hdr), *hdr)
    out += struct.pack("<%dI" % len(cfg["orders"]), *cfg["orders"])

    def i8(x):
        return x.to(torch.int8).cpu().numpy().tobytes()

    def i32(x):
        return x.to(torch.int32).cpu().numpy().tobytes()

    out += i8(Tq)
    out += i32(B1) + i32(im.M1) + i32(im.S1)
    out += i8(W2) + i32(B2) + i32(im.M2) + i32(im.S2)
    out += i8(W3) + i32(B3) + i32(im.M3) + i32(im.S3)
    out += i32(im.EXP)
    out += b"LMFSEND\x00"
    return bytes(out), im


def int_bpb(im, data, n, bs=65536):
    cfg = im.cfg
    tot = 0.0
    for s in range(0, n, bs):
        t = torch.arange(s, min(n, s + bs), device=data.device)
        f = im.freqs(windows(data, t, cfg["N"], BLOCK))
        p = f.gather(1, data[t].long()[:, None])[:, 0].double()
        tot += (TOTAL_BITS - torch.log2(p)).sum().item()
    return tot / n


VECTOR_INPUTS = [
    ("english", b"It was the best of times, it was the worst of times, it was the age of wisdom, "
                b"it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.\n"),
    ("go", b"package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n"),
    ("crlf", b"Subject: test\r\nFrom: a@example.org\r\n\r\nHello,\r\nthis line ends in CRLF.\r\n"),
    ("utf8", "Les élèves étudient la théorie. Москва — столица России. 日本語のテキストです。\n".encode()),
    ("one", b"A"),
    ("empty", b""),
]


def lcg_bytes(n, seed):
    out = bytearray()
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x >> 16 & 0xFF)
    return bytes(out)


def vectors(im, model_bytes):
    cases = []
    inputs = VECTOR_INPUTS + [("binary", lcg_bytes(600, 7)), ("zeros", bytes(300))]
    # A long input that crosses no block boundary but fills every window position.
    inputs.append(("long", (VECTOR_INPUTS[0][1] + VECTOR_INPUTS[1][1]) * 6))
    for name, data in inputs:
        dev = im.T.device
        d = torch.tensor(list(data) + [0], dtype=torch.uint8, device=dev)
        t = torch.arange(0, len(data) + 1, device=dev)  # +1: the table after the last byte too
        f = im.freqs(windows(d, t, im.cfg["N"]))
        assert (f.sum(1) == 1 << TOTAL_BITS).all() and (f >= 1).all()
        raw = f.to(torch.int32).cpu().numpy().astype("<u4").tobytes()
        cases.append({
            "name": name,
            "input": base64.b64encode(data).decode(),
            "positions": len(data) + 1,
            "freqs_sha256": hashlib.sha256(raw).hexdigest(),
            "first": f[0].tolist(),
            "bits": float((TOTAL_BITS - torch.log2(f[:-1].gather(1, d[:-1].long()[:, None]).double())).sum().item())
            if len(data) else 0.0,
        })
    return {"model_sha256": hashlib.sha256(model_bytes).hexdigest(), "total_bits": TOTAL_BITS, "cases": cases}


def cmd_export(a):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    st = torch.load(a.ckpt, map_location=dev)
    cfg = CONFIGS[st["cfg"]]
    net = Net(cfg).to(dev)
    net.load_state_dict(st["net"])
    model_bytes, im = export(net, cfg)
    with open(a.model, "wb") as f:
        f.write(model_bytes)
    log("model %s: %d bytes, sha256 %s, params %d" % (a.model, len(model_bytes),
                                                      hashlib.sha256(model_bytes).hexdigest(), nparams(cfg)))
    if a.vectors:
        with open(a.vectors, "w") as f:
            json.dump(vectors(im, model_bytes), f, indent=1)
    if a.data:
        val = load_bin(os.path.join(a.data, "val.bin"), dev)
        n = min(val.numel(), a.val_bytes)
        fb = evaluate(net, val, cfg, n, quant=False)
        qb = evaluate(net, val, cfg, n, quant=True)
        ib = int_bpb(im, val, n)
        log("val bpb over %d bytes: float (no quant) %.4f, fake-quant %.4f, integer %.4f (%+.2f%% vs fake-quant)" % (
            n, fb, qb, ib, 100 * (ib / qb - 1)))
        idxf = os.path.join(a.data, "val_index.tsv")
        if os.path.exists(idxf) and a.per_kind:
            kinds = {}
            for line in open(idxf).read().splitlines()[1:]:
                k, off, ln = line.split("\t")
                kinds.setdefault(k, []).append((int(off), int(ln)))
            for k, docs in sorted(kinds.items()):
                bits, nb = 0.0, 0
                for off, ln in docs:
                    if off + ln > n:
                        continue
                    t = torch.arange(off, off + ln, device=dev)
                    f = im.freqs(windows(val, t, cfg["N"], BLOCK))
                    p = f.gather(1, val[t].long()[:, None])[:, 0].double()
                    bits += (TOTAL_BITS - torch.log2(p)).sum().item()
                    nb += ln
                if nb:
                    log("  val %-11s %9d bytes  integer bpb %.4f" % (k, nb, bits / nb))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--cfg", default="m", choices=sorted(CONFIGS))
    tr.add_argument("--data", required=True)
    tr.add_argument("--ckpt", required=True)
    tr.add_argument("--seconds", type=float, required=True)
    tr.add_argument("--budget", type=float, default=0)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--bs", type=int, default=32768)
    tr.add_argument("--val-bytes", type=int, default=4 << 20)
    ex = sub.add_parser("export")
    ex.add_argument("--ckpt", required=True)
    ex.add_argument("--model", required=True)
    ex.add_argument("--vectors")
    ex.add_argument("--data")
    ex.add_argument("--val-bytes", type=int, default=8 << 20)
    ex.add_argument("--per-kind", action="store_true")
    a = ap.parse_args()
    {"train": cmd_train, "export": cmd_export}[a.cmd](a)


if __name__ == "__main__":
    main()
