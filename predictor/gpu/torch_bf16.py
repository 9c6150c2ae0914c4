"""Scoring throughput of the same LSTM shape in PyTorch bf16 (cuDNN), for
comparison with the integer CUDA backend in the same run (issue 4). Not part
of lmfs: floating point never shapes a coded probability.

The blocks are scored in chunks of TORCH_CHUNK positions (the LSTM's state
carried from one chunk to the next), so that the activations and the
log-probabilities of thousands of blocks in flight fit in GPU memory; the
chunks run one after another, as the positions of a block must."""
import os
import sys
import time

import torch

H, NL, L = int(os.environ.get("TORCH_H", "384")), 2, 2048
CHUNK = int(os.environ.get("TORCH_CHUNK", "256"))
dev = torch.device("cuda")
emb = torch.nn.Embedding(257, H).to(dev, torch.bfloat16)
lstm = torch.nn.LSTM(H, H, NL, batch_first=True).to(dev, torch.bfloat16)
head = torch.nn.Linear(H, 256).to(dev, torch.bfloat16)


def score(x):
    """Log-probabilities of every position of the blocks x (inflight x L),
    reduced to one number per block so that nothing is kept."""
    state = None
    total = torch.zeros(x.shape[0], device=dev)
    for t0 in range(0, x.shape[1], CHUNK):
        y, state = lstm(emb(x[:, t0:t0 + CHUNK]), state)
        p = torch.log_softmax(head(y).float(), -1)
        total += p.amax(-1).sum(-1)
    return total


for inflight in [int(x) for x in (sys.argv[1:] or ["1", "8", "64", "512", "4096"])]:
    x = torch.randint(0, 256, (inflight, L), device=dev)
    with torch.no_grad():
        for rep in range(2):  # first: warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            score(x)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
    print(f"torch bf16 LSTM H={H} NL={NL} inflight={inflight} chunk={CHUNK}: {inflight * L / dt / 1e6:.2f} MB/s scoring (encode only), "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
