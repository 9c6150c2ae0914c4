"""Scoring throughput of the same LSTM shape in PyTorch bf16 (cuDNN), for
comparison with the integer CUDA backend in the same run (issue 4). Not part
of lmfs: floating point never shapes a coded probability."""
import os
import sys
import time

import torch

H, NL, L = int(os.environ.get("TORCH_H", "384")), 2, 2048
dev = torch.device("cuda")
emb = torch.nn.Embedding(257, H).to(dev, torch.bfloat16)
lstm = torch.nn.LSTM(H, H, NL, batch_first=True).to(dev, torch.bfloat16)
head = torch.nn.Linear(H, 256).to(dev, torch.bfloat16)
for inflight in [int(x) for x in (sys.argv[1:] or ["1", "8", "64", "512", "4096"])]:
    x = torch.randint(0, 256, (inflight, L), device=dev)
    with torch.no_grad():
        for rep in range(2):  # first: warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            y, _ = lstm(emb(x))
            p = torch.log_softmax(head(y).float(), -1)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
    print(f"torch bf16 LSTM H={H} NL={NL} inflight={inflight}: {inflight * L / dt / 1e6:.2f} MB/s scoring (encode only)", flush=True)
