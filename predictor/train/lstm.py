#!/usr/bin/env python3
"""Train, export and check the lmfs LSTM byte model (architecture "lstm1", predictor/lm/SPEC.md).

Sub-commands:

  train   --cfg NAME --data DIR --ckpt FILE --seconds S [--qat-seconds Q]
          trains on DIR/train.bin: S - Q seconds of float training with cuDNN,
          then Q seconds of quantisation-aware fine-tuning that simulates the
          integer arithmetic. Resumes from FILE if it exists.
  export  --ckpt FILE --model OUT.lmm [--vectors OUT.json] [--data DIR]
          writes the integer model file, the test vectors computed by the exact
          integer simulation IntLSTM, and (with --data) validation bits per byte
          of the float model and of the exported integer model, overall and per
          kind (DIR/val_index.tsv).

Configurations with "match" build architecture "lstm2" (SPEC.md, architecture 3):
the model gets, besides the previous byte, the feature of a match model over the
block's earlier bytes (match.c, loaded through ctypes; built with cc at first use).

Training follows the coder's block protocol: a block starts with BOS (256) and
a zero state, and the state is carried over training chunks until the block
ends. Block lengths are drawn so that the model sees block starts often
(small files) and long blocks (64 KiB, the filesystem's block size).

IntLSTM is the reference that the Go implementation (predictor/lm) and the GPU
backend must match bit for bit.
"""
import argparse
import base64
import ctypes
import hashlib
import json
import math
import os
import struct
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

from train import (EXP_LEN, EXP_ONE, LF, TOTAL_BITS, VECTOR_INPUTS, lcg_bytes, load_bin, log,
                   logit_freqs, quant_mult)

BOS = 256
BLOCK = 65536
ZMAX = 2048          # z is in 1/256, clamped to [-ZMAX, ZMAX-1]
CLIM = 1 << 17       # c is in 1/4096, clamped to [-CLIM, CLIM]

CONFIGS = {
    # name: layers NL, hidden width H, embedding width E (training only: folded into T0)
    "tiny": dict(NL=2, H=32, E=16),
    "s": dict(NL=1, H=384, E=128),
    "m": dict(NL=1, H=512, E=128),
    "m2": dict(NL=2, H=384, E=128),
    "l2": dict(NL=2, H=512, E=128),
    # lstm2: the same shapes with the match-model input
    "tiny2": dict(NL=2, H=32, E=16, match=True),
    "m2x": dict(NL=2, H=384, E=128, match=True),
}
NFEAT = 1 + 256 * 8  # match features (SPEC.md, "Match model")


def nomatch(name):
    """The config name without the match input (a checkpoint of it can seed this one)."""
    return {"tiny2": "tiny", "m2x": "m2"}.get(name, name)


# ---------------------------------------------------------------- the match model (match.c)

_match_lib = None


def match_lib():
    global _match_lib
    if _match_lib is None:
        here = os.path.dirname(os.path.abspath(__file__))
        so = "/tmp/lmfs_match_%d.so" % os.getpid()
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, os.path.join(here, "match.c")], check=True)
        lib = ctypes.CDLL(so)
        lib.match_blocks.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        _match_lib = lib
    return _match_lib


def match_feats(host, starts, lens, stride):
    """Features [len(starts), stride] (uint16) of the blocks host[starts[b] : starts[b] + lens[b]]:
    entry t is the feature after t bytes of its block (f_0 = 0); entries past a block's end are 0."""
    starts = np.ascontiguousarray(starts, np.int64)
    lens = np.ascontiguousarray(lens, np.int32)
    out = np.zeros((len(starts), stride), np.uint16)
    table = np.zeros(1 << 16, np.uint32)
    host = np.ascontiguousarray(host, np.uint8)
    match_lib().match_blocks(host.ctypes.data, len(starts), starts.ctypes.data, lens.ctypes.data,
                             out.ctypes.data, stride, table.ctypes.data)
    return out


def nparams(c):
    NL, H = c["NL"], c["H"]
    return (257 + (NFEAT if c.get("match") else 0)) * 4 * H + 4 * H * H + (NL - 1) * 4 * H * 2 * H + 256 * H


def macs(c):
    NL, H = c["NL"], c["H"]
    return 4 * H * H + (NL - 1) * 4 * H * 2 * H + 256 * H


# ---------------------------------------------------------------- the float model

def fq(x, step, lo, hi):
    """Fake-quantise x to multiples of step clamped to [lo, hi], straight-through gradient."""
    q = torch.clamp(torch.round(x / step), lo, hi) * step
    return x + (q - x).detach()


def fq_rows(w):
    """int8 rows with one scale each (max |row| / 127), straight-through gradient."""
    s = w.detach().abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
    q = torch.clamp(torch.round(w / s), -127, 127) * s
    return w + (q - w).detach()


class Net(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, E, NL = cfg["H"], cfg["E"], cfg["NL"]
        self.emb = torch.nn.Embedding(257, E)
        self.lstm = torch.nn.LSTM(E, H, NL, batch_first=True)
        self.head = torch.nn.Linear(H, 256)
        self.emb2 = torch.nn.Embedding(NFEAT, E) if cfg.get("match") else None
        with torch.no_grad():
            self.emb.weight.normal_(0, 1)
            if self.emb2 is not None:
                self.emb2.weight.normal_(0, 1)
            for l in range(NL):  # forget-gate bias 1: remember by default
                getattr(self.lstm, "bias_ih_l%d" % l)[H:2 * H].fill_(1.0)

    def embed(self, x, f):
        e = self.emb(x)
        return e if self.emb2 is None else e + self.emb2(f)

    def forward(self, x, state, f=None):
        """x [B, T] symbols (0..256); f [B, T] match features (lstm2); state (h, c) each
        [NL, B, H]. Returns logits, state."""
        y, st = self.lstm(self.embed(x, f), state)
        return self.head(y), st

    def zero_state(self, B, dev):
        z = torch.zeros(self.cfg["NL"], B, self.cfg["H"], device=dev)
        return (z, z.clone())

    def qat_forward(self, x, state, feats=None):
        """The integer arithmetic simulated in float (fake quantisation, STE); slow, per step."""
        H, NL = self.cfg["H"], self.cfg["NL"]
        h = [fq(state[0][l], 1 / 128, -127, 127) for l in range(NL)]
        c = [state[1][l].clamp(-32, 32) for l in range(NL)]
        t0 = self.emb.weight @ self.lstm.weight_ih_l0.t() + self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0
        t0 = fq(t0, 1 / 256, -(1 << 20), 1 << 20)
        t1 = None
        if self.emb2 is not None:
            t1 = fq(self.emb2.weight @ self.lstm.weight_ih_l0.t(), 1 / 256, -32767, 32767)
        ws, bs = [], []
        for l in range(NL):
            if l == 0:
                ws.append(fq_rows(self.lstm.weight_hh_l0))
                bs.append(None)
            else:
                w = torch.cat([getattr(self.lstm, "weight_ih_l%d" % l), getattr(self.lstm, "weight_hh_l%d" % l)], 1)
                ws.append(fq_rows(w))
                bs.append(fq(getattr(self.lstm, "bias_ih_l%d" % l) + getattr(self.lstm, "bias_hh_l%d" % l),
                             1 / 256, -(1 << 20), 1 << 20))
        wo = fq_rows(self.head.weight)
        outs = []
        for t in range(x.shape[1]):
            for l in range(NL):
                if l == 0:
                    z = F.linear(h[0], ws[0]) + t0[x[:, t]]
                    if t1 is not None:
                        z = z + t1[feats[:, t]]
                else:
                    z = F.linear(torch.cat([h[l - 1], h[l]], 1), ws[l], bs[l])
                z = fq(z, 1 / 256, -ZMAX, ZMAX - 1)
                i, f, g, o = z.split(H, 1)
                cl = torch.sigmoid(f) * c[l] + torch.sigmoid(i) * torch.tanh(g)
                cl = fq(cl, 1 / 4096, -CLIM, CLIM)
                c[l] = cl
                h[l] = fq(torch.sigmoid(o) * torch.tanh(cl), 1 / 128, -127, 127)
            outs.append(h[NL - 1])
        y = torch.stack(outs, 1)
        return F.linear(y, wo, self.head.bias), (torch.stack(h), torch.stack(c))


# ---------------------------------------------------------------- training

class Streams:
    """B training streams, each reading consecutive chunks of T bytes of one block.

    A block is k chunks long: k = 65536 / T with probability 1/2, else a power of
    two below it, so block starts (BOS, zero state) are common but long blocks
    are the norm. At a block start the chunk's first input is BOS and the state
    is reset.
    """

    def __init__(self, data, B, T, gen, host=None):
        self.data, self.B, self.T, self.gen = data, B, T, gen
        dev = data.device
        self.pos = torch.zeros(B, dtype=torch.int64, device=dev)
        self.rem = torch.zeros(B, dtype=torch.int64, device=dev)
        self.kmax = max(1, BLOCK // T)
        self.ar = torch.arange(T, device=dev)
        # lstm2: host is the data on the host; each stream's block gets its match
        # features (from the block's start) when it begins.
        self.host = host
        if host is not None:
            self.buf = np.zeros((B, self.kmax * T), np.uint16)
            self.off = np.zeros(B, np.int64)
            self.rows = np.arange(B)[:, None]
            self.cols = np.arange(T)[None, :]

    def next_feats(self):
        """next() and the chunk's match features [B, T] (int64; None without host)."""
        x, y, fresh = self.next()
        if self.host is None:
            return x, y, None, fresh
        fr = fresh.nonzero().flatten()
        if fr.numel():
            idx = fr.cpu().numpy()
            starts = (self.pos[fr] - self.T).cpu().numpy()
            lens = ((self.rem[fr] + 1) * self.T).cpu().numpy()
            self.buf[idx] = match_feats(self.host, starts, lens, self.buf.shape[1])
            self.off[idx] = 0
        f = self.buf[self.rows, self.off[:, None] + self.cols]
        self.off += self.T
        return x, y, torch.from_numpy(f.astype(np.int64)).to(self.data.device), fresh

    def next(self):
        dev = self.data.device
        fresh = self.rem == 0
        n = int(fresh.sum())
        if n:
            full = torch.rand(n, device=dev, generator=self.gen) < 0.5
            e = torch.randint(0, max(1, int(math.log2(self.kmax))), (n,), device=dev, generator=self.gen)
            k = torch.where(full, torch.full_like(e, self.kmax), 1 << e)
            p = torch.randint(0, self.data.numel() - self.kmax * self.T - 1, (n,), device=dev, generator=self.gen)
            self.pos[fresh] = p
            self.rem[fresh] = k
        idx = self.pos[:, None] + self.ar[None, :]
        y = self.data[idx].long()
        prev = torch.where(fresh, torch.full_like(self.pos, BOS), self.data[(self.pos - 1).clamp(min=0)].long())
        x = torch.cat([prev[:, None], y[:, :-1]], 1)
        self.pos += self.T
        self.rem -= 1
        return x, y, fresh


def val_feats(val, nb, dev):
    """Match features [nb, BLOCK] of the validation blocks of 64 KiB (int64 on dev)."""
    host = val[: nb * BLOCK].cpu().numpy()
    f = match_feats(host, np.arange(nb) * BLOCK, np.full(nb, BLOCK), BLOCK)
    return torch.from_numpy(f.astype(np.int64)).to(dev)


def float_eval(net, val, nb, dev, chunk=4096):
    """Mean bits per byte of the float model over nb blocks of 64 KiB, and per-position costs."""
    net.eval()
    v = val[: nb * BLOCK].view(nb, BLOCK).long()
    f = val_feats(val, nb, dev) if net.emb2 is not None else None
    cost = torch.zeros(nb, BLOCK, dtype=torch.float64, device=dev)
    with torch.no_grad():
        st = net.zero_state(nb, dev)
        x = torch.cat([torch.full((nb, 1), BOS, device=dev, dtype=torch.long), v[:, :-1]], 1)
        for s in range(0, BLOCK, chunk):
            lg, st = net(x[:, s:s + chunk], st, None if f is None else f[:, s:s + chunk])
            cost[:, s:s + chunk] = F.cross_entropy(lg.float().transpose(1, 2), v[:, s:s + chunk],
                                                   reduction="none").double() / math.log(2)
    net.train()
    return cost.mean().item(), cost


def lr_factor(frac):
    """The learning-rate schedule at fraction frac of the training time: a linear warm-up over the
    first 2 %, then a cosine from 1 down to 0.05."""
    return frac / 0.02 if frac < 0.02 else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (frac - 0.02) / 0.98))


def carry(state, fresh):
    """The LSTM state (h, c) carried to the next window, detached, with the streams that start a new
    block (fresh, a bool per stream) reset to zero."""
    keep = (~fresh).float()[None, :, None]
    return state[0].detach() * keep, state[1].detach() * keep


def train_step(net, opt, lg, y):
    """One optimiser step on logits lg (T, B, 256) for targets y: cross-entropy in bits, gradients
    clipped to norm 1. Returns the loss (a tensor)."""
    loss = F.cross_entropy(lg.reshape(-1, 256).float(), y.reshape(-1)) / math.log(2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return loss


def cmd_train(a):
    cfg = CONFIGS[a.cfg]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    data = load_bin(os.path.join(a.data, "train.bin"), dev)
    log("cfg", a.cfg, cfg, "params", nparams(cfg), "MACs/byte", macs(cfg), "train bytes", data.numel())
    torch.manual_seed(a.seed)
    net = Net(cfg).to(dev)
    host = data.cpu().numpy() if cfg.get("match") else None
    # The match-feature embedding learns faster than the rest (it starts at zero
    # when the run starts from an lstm1 checkpoint).
    groups = [{"params": [p for n, p in net.named_parameters() if not n.startswith("emb2.")], "lr": a.lr}]
    if net.emb2 is not None:
        groups.append({"params": list(net.emb2.parameters()), "lr": a.lr * a.lr2_factor})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    base_lr = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed + 1)
    elapsed, step, phase_q = 0.0, 0, 0.0
    if a.init and not os.path.exists(a.ckpt):
        # Continue from another run's weights with a fresh optimizer and schedule
        # (a warm restart), e.g. on more data.
        st = torch.load(a.init, map_location=dev)
        if st.get("cfg") not in (None, a.cfg, nomatch(a.cfg)):
            raise SystemExit("--init %s holds config %s, not %s" % (a.init, st.get("cfg"), a.cfg))
        missing, unexpected = net.load_state_dict(st["net"], strict=False)
        if unexpected or any(not k.startswith("emb2.") for k in missing):
            raise SystemExit("--init %s does not fit %s: missing %s, unexpected %s" % (a.init, a.cfg, missing, unexpected))
        if missing:
            # from an lstm1 checkpoint: the match input starts at zero, so the
            # model starts as the one it came from
            with torch.no_grad():
                net.emb2.weight.zero_()
        log("initialised from", a.init, "(its step %s)" % st.get("step"))
    if os.path.exists(a.ckpt):
        st = torch.load(a.ckpt, map_location=dev)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        elapsed, step = st["elapsed"], st["step"]
        log("resumed at step", step, "after %.0f s" % elapsed)
    total = a.seconds
    qat_from = total - a.qat_seconds
    streams = Streams(data, a.bs, a.T, gen, host)
    qstreams = None
    state = net.zero_state(a.bs, dev)
    qstate = None
    t0 = time.time()
    start_elapsed = elapsed
    seen, ema = 0, None
    while True:
        elapsed = start_elapsed + (time.time() - t0)
        if elapsed >= total:
            break
        qat = elapsed >= qat_from
        if not qat:
            frac = elapsed / max(qat_from, 1e-9)
            lr = a.lr * lr_factor(frac)
            x, y, f, fresh = streams.next_feats()
            state = carry(state, fresh)
            lg, state = net(x, state, f)
        else:
            if qstreams is None:
                log("step %d: quantisation-aware fine-tuning from %.0f s" % (step, elapsed))
                qstreams = Streams(data, a.qbs, a.qT, gen, host)
                qstate = net.zero_state(a.qbs, dev)
            lr = a.lr * 0.05
            x, y, f, fresh = qstreams.next_feats()
            qstate = carry(qstate, fresh)
            lg, qstate = net.qat_forward(x, qstate, f)
        for g, b in zip(opt.param_groups, base_lr):
            g["lr"] = lr * b / a.lr
        loss = train_step(net, opt, lg, y)
        step += 1
        seen += y.numel()
        l = loss.item() if step % 50 == 0 else None
        if l is not None:
            ema = l if ema is None else 0.9 * ema + 0.1 * l
            if step % (500 if not qat else 50) == 0:
                log("step %d elapsed %.0fs lr %.2e train bpb %.4f (%.2fM bytes/s)%s" % (
                    step, elapsed, lr, ema, seen / (time.time() - t0) / 1e6, " qat" if qat else ""))
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed, "step": step,
                "cfg": a.cfg}, a.ckpt)
    log("done: step %d, %.0f s, %.2fM bytes seen" % (step, elapsed, seen / 1e6))


# ---------------------------------------------------------------- export and the integer model

def mults(scales):
    """(M, S) lists for positive multipliers; a multiplier too small for S <= 62 becomes 0."""
    M, S = [], []
    for v in scales:
        try:
            m, s = quant_mult(v)
        except ValueError:
            m, s = 0, 1
        M.append(m)
        S.append(s)
    return M, S


class IntLSTM:
    """The exact integer model of SPEC.md (lstm1), on int64 tensors (float64 sums are exact)."""

    def __init__(self, cfg, SIG, TANH, T0, W, B, M, S, WO, BO, MO, SO, EXP, T1=None):
        self.cfg = cfg
        self.SIG, self.TANH, self.T0, self.T1 = SIG, TANH, T0, T1
        self.W, self.B, self.M, self.S = W, B, M, S
        self.Wd = [w.double().t().contiguous() for w in W]
        self.WO, self.BO, self.MO, self.SO = WO, BO, MO, SO
        self.WOd = WO.double().t().contiguous()
        self.EXP = EXP
        self.half = [torch.bitwise_left_shift(torch.ones_like(s), s - 1) for s in S]
        self.halfO = torch.bitwise_left_shift(torch.ones_like(SO), SO - 1)

    def zero(self, n):
        H, NL = self.cfg["H"], self.cfg["NL"]
        dev = self.T0.device
        return ([torch.zeros(n, H, dtype=torch.int64, device=dev) for _ in range(NL)],
                [torch.zeros(n, H, dtype=torch.int64, device=dev) for _ in range(NL)])

    def step(self, st, x, f=None):
        """Consumes symbols x [n] (int64, 0..256) with match features f [n] (lstm2);
        updates st = (h, c) in place."""
        h, c = st
        H = self.cfg["H"]
        for l in range(self.cfg["NL"]):
            inp = h[0] if l == 0 else torch.cat([h[l - 1], h[l]], 1)
            acc = (inp.double() @ self.Wd[l]).long()
            z = torch.bitwise_right_shift(acc * self.M[l] + self.half[l], self.S[l]) + self.B[l]
            if l == 0:
                z = z + self.T0[x]
                if self.T1 is not None:
                    z = z + self.T1[f]
            z = z.clamp(-ZMAX, ZMAX - 1) + ZMAX
            ig = self.SIG[z[:, :H]]
            fg = self.SIG[z[:, H:2 * H]]
            gg = self.TANH[z[:, 2 * H:3 * H]]
            og = self.SIG[z[:, 3 * H:]]
            cl = torch.bitwise_right_shift(fg * c[l] + ig * gg + 2048, 12).clamp(-CLIM, CLIM)
            tc = self.TANH[torch.bitwise_right_shift(cl, 4).clamp(-ZMAX, ZMAX - 1) + ZMAX]
            h[l] = torch.bitwise_right_shift(og * tc + (1 << 16), 17).clamp(-127, 127)
            c[l] = cl

    def freqs(self, st):
        """Frequencies [n, 256] (int64, sum 2**TOTAL_BITS) from the top layer's h."""
        h = st[0][self.cfg["NL"] - 1]
        acc = (h.double() @ self.WOd).long()
        L = (torch.bitwise_right_shift(acc * self.MO + self.halfO, self.SO) + self.BO).clamp(-(1 << 24), 1 << 24)
        return logit_freqs(L, self.EXP)


def export(net, cfg):
    """Quantises net; returns (model file bytes, IntLSTM)."""
    H, NL = cfg["H"], cfg["NL"]
    dev = net.head.weight.device
    lstm = net.lstm
    with torch.no_grad():
        k = torch.arange(4096, dtype=torch.float64)
        SIG = torch.round(4096 / (1 + torch.exp(-(k - 2048) / 256))).long()
        TANH = torch.round(4096 * torch.tanh((k - 2048) / 256)).long()
        t0 = net.emb.weight.double() @ lstm.weight_ih_l0.double().t() + lstm.bias_ih_l0.double() + lstm.bias_hh_l0.double()
        T0 = torch.round(256 * t0).clamp(-(1 << 20), 1 << 20).long()
        T1 = None
        if net.emb2 is not None:
            t1 = net.emb2.weight.double() @ lstm.weight_ih_l0.double().t()
            T1 = torch.round(256 * t1).clamp(-32767, 32767).long()
        W, B, M, S = [], [], [], []
        for l in range(NL):
            if l == 0:
                w = lstm.weight_hh_l0.double()
                b = torch.zeros(4 * H, dtype=torch.int64, device=dev)
            else:
                w = torch.cat([getattr(lstm, "weight_ih_l%d" % l), getattr(lstm, "weight_hh_l%d" % l)], 1).double()
                b = torch.round(256 * (getattr(lstm, "bias_ih_l%d" % l) + getattr(lstm, "bias_hh_l%d" % l)).double())
                b = b.clamp(-(1 << 20), 1 << 20).long()
            s = w.abs().amax(1).clamp(min=1e-12) / 127
            W.append(torch.clamp(torch.round(w / s[:, None]), -127, 127).long())
            m, sh = mults((2 * s).tolist())
            M.append(torch.tensor(m, dtype=torch.int64, device=dev))
            S.append(torch.tensor(sh, dtype=torch.int64, device=dev))
            B.append(b)
        wo = net.head.weight.double()
        so = wo.abs().amax(1).clamp(min=1e-12) / 127
        WO = torch.clamp(torch.round(wo / so[:, None]), -127, 127).long()
        mo, sho = mults((so * (1 << LF) / 128).tolist())
        MO = torch.tensor(mo, dtype=torch.int64, device=dev)
        SO = torch.tensor(sho, dtype=torch.int64, device=dev)
        BO = torch.round(net.head.bias.double() * (1 << LF)).clamp(-(1 << 30), 1 << 30).long()
        EXP = torch.tensor([int(round(EXP_ONE * math.exp(-d / (1 << LF)))) for d in range(EXP_LEN)],
                           dtype=torch.int64, device=dev)
    SIG, TANH, T0 = SIG.to(dev), TANH.to(dev), T0.to(dev)
    im = IntLSTM(cfg, SIG, TANH, T0, W, B, M, S, WO, BO, MO, SO, EXP, T1)

    def i8(x):
        return x.to(torch.int8).cpu().numpy().tobytes()

    def i32(x):
        return x.to(torch.int32).cpu().numpy().astype("<i4").tobytes()

    def i16(x):
        return x.to(torch.int16).cpu().numpy().astype("<i2").tobytes()

    out = bytearray(b"LMFSLM\x00\x01")
    out += struct.pack("<7I", 1, 3 if T1 is not None else 2, NL, H, LF, EXP_LEN, TOTAL_BITS)
    out += i32(SIG) + i32(TANH) + i32(T0)
    if T1 is not None:
        out += i16(T1)
    for l in range(NL):
        out += i8(W[l]) + i32(B[l]) + i32(M[l]) + i32(S[l])
    out += i8(WO) + i32(BO) + i32(MO) + i32(SO)
    out += i32(EXP)
    out += b"LMFSEND\x00"
    return bytes(out), im


def int_costs(im, val, nb, dev):
    """Per-position cost in bits [nb, BLOCK] of the integer model over nb blocks of 64 KiB."""
    v = val[: nb * BLOCK].view(nb, BLOCK).long()
    fv = val_feats(val, nb, dev) if im.T1 is not None else None
    cost = torch.zeros(nb, BLOCK, dtype=torch.float64, device=dev)
    st = im.zero(nb)
    x = torch.full((nb,), BOS, dtype=torch.int64, device=dev)
    for t in range(BLOCK):
        im.step(st, x, None if fv is None else fv[:, t])
        f = im.freqs(st)
        x = v[:, t]
        cost[:, t] = TOTAL_BITS - torch.log2(f.gather(1, x[:, None])[:, 0].double())
    return cost


def run_int(im, data):
    """Frequency tables [len+1, 256] of every position of one block (and after its last byte)."""
    st = im.zero(1)
    dev = im.T0.device
    fs = None
    if im.T1 is not None:
        # f_t for t = 0..len: the features of the block, one more for after its last byte
        host = np.frombuffer(bytes(data) + b"\0", np.uint8)
        fs = match_feats(host, [0], [len(data) + 1], len(data) + 1)[0].astype(np.int64).tolist()
    out = []
    for t in range(len(data) + 1):
        f = None if fs is None else torch.tensor([fs[t]], dtype=torch.int64, device=dev)
        im.step(st, torch.tensor([BOS if t == 0 else data[t - 1]], dtype=torch.int64, device=dev), f)
        out.append(im.freqs(st)[0])
    return torch.stack(out)


def vectors(im, model_bytes):
    cases = []
    inputs = VECTOR_INPUTS + [("binary", lcg_bytes(600, 7)), ("zeros", bytes(300))]
    inputs.append(("long", (VECTOR_INPUTS[0][1] + VECTOR_INPUTS[1][1]) * 6))
    for name, data in inputs:
        f = run_int(im, data)
        assert (f.sum(1) == 1 << TOTAL_BITS).all() and (f >= 1).all()
        raw = f.to(torch.int32).cpu().numpy().astype("<u4").tobytes()
        d = torch.tensor(list(data), dtype=torch.int64, device=f.device)
        bits = float((TOTAL_BITS - torch.log2(f[:-1].gather(1, d[:, None]).double())).sum().item()) if len(data) else 0.0
        cases.append({"name": name, "input": base64.b64encode(data).decode(), "positions": len(data) + 1,
                      "freqs_sha256": hashlib.sha256(raw).hexdigest(), "first": f[0].tolist(), "bits": bits})
    return {"model_sha256": hashlib.sha256(model_bytes).hexdigest(), "total_bits": TOTAL_BITS, "cases": cases}


def per_kind(cost, data_dir):
    """Bits per byte per kind of the validation split (val_index.tsv), over the blocks evaluated."""
    path = os.path.join(data_dir, "val_index.tsv")
    if not os.path.exists(path):
        return {}
    flat = cost.reshape(-1)
    n = flat.numel()
    sums = {}
    with open(path) as f:
        next(f)
        for line in f:
            kind, off, ln = line.split("\t")
            off, ln = int(off), int(ln)
            if off >= n:
                continue
            e = min(n, off + ln)
            s = sums.setdefault(kind, [0.0, 0])
            s[0] += flat[off:e].sum().item()
            s[1] += e - off
    return {k: (v[0] / v[1], v[1]) for k, v in sorted(sums.items())}


def cmd_export(a):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    st = torch.load(a.ckpt, map_location=dev)
    cfg = CONFIGS[st["cfg"]]
    net = Net(cfg).to(dev)
    net.load_state_dict(st["net"])
    net.eval()
    model, im = export(net, cfg)
    with open(a.model, "wb") as f:
        f.write(model)
    log("model %s: %d bytes, sha256 %s, params %d, MACs/byte %d" % (
        a.model, len(model), hashlib.sha256(model).hexdigest(), nparams(cfg), macs(cfg)))
    if a.vectors:
        with open(a.vectors, "w") as f:
            json.dump(vectors(im, model), f, indent=1)
        log("vectors written to", a.vectors)
    if a.data:
        val = load_bin(os.path.join(a.data, "val.bin"), dev)
        nb = min(val.numel(), a.val_bytes) // BLOCK
        fb, fcost = float_eval(net, val, nb, dev)
        log("val (%d blocks of 64 KiB): float bpb %.4f" % (nb, fb))
        t = time.time()
        icost = int_costs(im, val, nb, dev)
        ib = icost.mean().item()
        log("val: integer bpb %.4f (%.2f%% vs float; %.0f s)" % (ib, 100 * (ib / fb - 1), time.time() - t))
        fk, ik = per_kind(fcost, a.data), per_kind(icost, a.data)
        for k in ik:
            log("  kind %-8s %9d bytes  float %.4f  integer %.4f" % (k, ik[k][1], fk[k][0], ik[k][0]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--cfg", required=True, choices=sorted(CONFIGS))
    t.add_argument("--data", required=True)
    t.add_argument("--ckpt", required=True)
    t.add_argument("--seconds", type=float, required=True)
    t.add_argument("--qat-seconds", type=float, default=0)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--bs", type=int, default=512)
    t.add_argument("--T", type=int, default=256)
    t.add_argument("--qbs", type=int, default=1024)
    t.add_argument("--qT", type=int, default=64)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--init", help="start from the weights of this checkpoint (fresh optimizer and schedule); "
                   "an lstm2 config may start from the lstm1 config of its shape (the match input then starts at zero)")
    t.add_argument("--lr2-factor", type=float, default=6.0, help="learning rate of the match embedding, times --lr")
    e = sub.add_parser("export")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--model", required=True)
    e.add_argument("--vectors")
    e.add_argument("--data")
    e.add_argument("--val-bytes", type=int, default=1 << 30)
    a = p.parse_args()
    {"train": cmd_train, "export": cmd_export}[a.cmd](a)


if __name__ == "__main__":
    main()
