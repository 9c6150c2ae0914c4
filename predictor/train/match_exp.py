#!/usr/bin/env python3
"""Experiment: does a match-model input make the LSTM byte model better?

The lstm1 model (lstm.py) sees only the previous byte; it cannot copy long
repeats, which cost it most on logs, JSON and tables. This script feeds it,
besides the previous byte, the feature of a small match model (match.c: the
byte that the most recent repeat of the last 5+ bytes predicts and that
repeat's length bucket, computed from the block's own earlier bytes, the state
empty at every block start, as a coder would). The feature enters through a
second embedding added to the byte's (in the integer model that is a second
table T1 added to layer 0's gate sums next to T0).

Both runs start from the same checkpoint (--init) and train on the same
streams for the same time: "base" with the feature forced to "no match" (its
embedding frozen at zero: the model as it is), "match" with the feature. Then
both are evaluated in float on the validation split (blocks of 64 KiB) with
per-kind figures. Not a product model: nothing here is exported.

  match_exp.py --data DIR --init CKPT --out DIR --seconds S --mode base|match
"""
import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from lstm import BLOCK, BOS, CONFIGS, NFEAT, Net, Streams, carry, lr_factor, match_feats, per_kind, train_step
from train import load_bin, log

class Feats:
    """Match features of blocks of one byte array (host, numpy uint8)."""

    def __init__(self, host):
        self.host = host

    def blocks(self, starts, lens, stride):
        return match_feats(self.host, starts, lens, stride)


class NetM(Net):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.emb2 = torch.nn.Embedding(NFEAT, cfg["E"])
        with torch.no_grad():
            self.emb2.weight.zero_()

    def forward(self, x, f, state):
        y, st = self.lstm(self.emb(x) + self.emb2(f), state)
        return self.head(y), st


class StreamsM(Streams):
    def __init__(self, data, feats, B, T, gen):
        super().__init__(data, B, T, gen)
        self.feats = feats
        self.buf = np.zeros((B, BLOCK), np.uint16)
        self.off = np.zeros(B, np.int64)
        self.rows = np.arange(B)[:, None]
        self.cols = np.arange(T)[None, :]

    def next(self):
        x, y, fresh = super().next()
        fr = fresh.nonzero().flatten()
        if fr.numel():
            starts = (self.pos[fr] - self.T).cpu().numpy()
            lens = ((self.rem[fr] + 1) * self.T).cpu().numpy()
            idx = fr.cpu().numpy()
            self.buf[idx] = self.feats.blocks(starts, lens, BLOCK)
            self.off[idx] = 0
        f = self.buf[self.rows, self.off[:, None] + self.cols]
        self.off += self.T
        return x, y, torch.from_numpy(f.astype(np.int64)).to(self.data.device), fresh


def evaluate(net, val, feats, nb, dev, use, chunk=4096):
    net.eval()
    v = val[: nb * BLOCK].view(nb, BLOCK).long()
    f = feats.blocks(np.arange(nb) * BLOCK, np.full(nb, BLOCK), BLOCK).astype(np.int64)
    f = torch.from_numpy(f).to(dev) if use else torch.zeros(nb, BLOCK, dtype=torch.long, device=dev)
    cost = torch.zeros(nb, BLOCK, dtype=torch.float64, device=dev)
    with torch.no_grad():
        st = net.zero_state(nb, dev)
        x = torch.cat([torch.full((nb, 1), BOS, device=dev, dtype=torch.long), v[:, :-1]], 1)
        for s in range(0, BLOCK, chunk):
            lg, st = net(x[:, s:s + chunk], f[:, s:s + chunk], st)
            cost[:, s:s + chunk] = F.cross_entropy(lg.float().transpose(1, 2), v[:, s:s + chunk],
                                                   reduction="none").double() / math.log(2)
    net.train()
    return cost.mean().item(), cost


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["base", "match"], required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lr2", type=float, default=3e-3, help="learning rate of the feature embedding")
    p.add_argument("--bs", type=int, default=512)
    p.add_argument("--T", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    data = load_bin(os.path.join(a.data, "train.bin"), dev)
    host = data.cpu().numpy()
    val = load_bin(os.path.join(a.data, "val.bin"), dev)
    vfeats = Feats(val.cpu().numpy())
    nb = val.numel() // BLOCK
    st = torch.load(a.init, map_location=dev)
    cfg = CONFIGS[st["cfg"]]
    torch.manual_seed(a.seed)
    net = NetM(cfg).to(dev)
    missing, unexpected = net.load_state_dict(st["net"], strict=False)
    assert missing == ["emb2.weight"] and not unexpected, (missing, unexpected)
    use = a.mode == "match"
    net.emb2.weight.requires_grad_(use)
    b0, _ = evaluate(net, val, vfeats, nb, dev, use)
    log("%s: init %s, val float bpb before %.4f (%d blocks)" % (a.mode, a.init, b0, nb))
    groups = [{"params": [q for n, q in net.named_parameters() if n != "emb2.weight"], "lr": a.lr}]
    if use:
        groups.append({"params": [net.emb2.weight], "lr": a.lr2})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    base_lr = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed + 1)
    streams = StreamsM(data, Feats(host), a.bs, a.T, gen)
    state = net.zero_state(a.bs, dev)
    t0, step, seen, ema = time.time(), 0, 0, None
    while True:
        el = time.time() - t0
        if el >= a.seconds:
            break
        frac = el / a.seconds
        k = lr_factor(frac)
        for g, lr in zip(opt.param_groups, base_lr):
            g["lr"] = lr * k
        x, y, f, fresh = streams.next()
        if not use:
            f = torch.zeros_like(f)
        state = carry(state, fresh)
        lg, state = net(x, f, state)
        loss = train_step(net, opt, lg, y)
        step += 1
        seen += y.numel()
        if step % 50 == 0:
            l = loss.item()
            ema = l if ema is None else 0.9 * ema + 0.1 * l
            if step % 500 == 0:
                log("%s step %d %.0fs train bpb %.4f (%.2fM bytes/s)" % (a.mode, step, el, ema, seen / el / 1e6))
    b1, cost = evaluate(net, val, vfeats, nb, dev, use)
    log("%s: %d steps, %.1fM bytes, val float bpb %.4f (before %.4f)" % (a.mode, step, seen / 1e6, b1, b0))
    for kind, (bpb, n) in per_kind(cost, a.data).items():
        log("  kind %-12s %9d bytes  %.4f" % (kind, n, bpb))
    torch.save({"net": net.state_dict(), "cfg": st["cfg"], "mode": a.mode, "step": step},
               os.path.join(a.out, "%s.net.pt" % a.mode))


if __name__ == "__main__":
    main()
