"""Data-parallel training with rnnfast inside a PyTorch model (DistributedDataParallel, gloo).

On one machine, 2 processes (each gets half of every batch; DDP averages their gradients):

    python examples/ddp_train.py --world-size 2 --steps 50

Or with torchrun (on one machine, or on several: see the README's "Several machines"):

    torchrun --nproc-per-node 2 examples/ddp_train.py --steps 50

The model is a character-level language model on a synthetic text: embedding -> 2-layer LSTM
(rnnfast.torch.LSTM) -> linear. Every process binds to the loopback interface unless told
otherwise (GLOO_SOCKET_IFNAME, MASTER_ADDR).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import rnnfast.torch as rt

VOCAB = 32


class CharModel(torch.nn.Module):
    def __init__(self, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 16)
        self.rnn = rt.LSTM(16, hidden, layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.embed(ids))
        return self.head(y)


def make_model(seed: int, dtype: torch.dtype) -> CharModel:
    torch.manual_seed(seed)
    return CharModel().to(dtype)


def make_batch(step: int, batch: int, steps: int = 24) -> torch.Tensor:
    """A batch of a periodic 'text' with noise: each process draws the same one and keeps its
    share, so any world size sees the same data."""
    g = torch.Generator().manual_seed(1000 + step)
    start = torch.randint(0, VOCAB, (batch, 1), generator=g)
    ids = (start + torch.arange(steps + 1)) % VOCAB
    noise = torch.rand(ids.shape, generator=g) < 0.1
    return torch.where(noise, torch.randint(0, VOCAB, ids.shape, generator=g), ids)


def loss_of(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))


def train(rank: int, world: int, args: argparse.Namespace, init_method: str) -> None:
    """Trains; when a peer dies or stops answering for --timeout seconds, says so and exits 1."""
    try:
        _train(rank, world, args, init_method)
    except (RuntimeError, dist.DistBackendError) as e:
        # A peer is gone or stuck: tearing gloo down now can abort this process ("terminate
        # called without an active exception"), so leave without it, saying why.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(
            f"rank {rank}: stopped, a peer failed or did not answer within {args.timeout} s: "
            f"{first}",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(1)


def _train(rank: int, world: int, args: argparse.Namespace, init_method: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    timeout = datetime.timedelta(seconds=args.timeout)
    dist.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=world, timeout=timeout
    )
    try:
        torch.set_num_threads(max(1, args.threads))
        dtype = torch.float64 if args.dtype == "float64" else torch.float32
        model = DistributedDataParallel(make_model(args.seed, dtype))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        share = args.batch // world
        for step in range(args.steps):
            ids = make_batch(step, args.batch)[rank * share : (rank + 1) * share]
            loss = loss_of(model, ids)
            opt.zero_grad()
            loss.backward()
            if step == 0 and args.save_grads and rank == 0:
                grads = {n: p.grad.numpy() for n, p in model.module.named_parameters()}
                np.savez(args.save_grads, **grads)
            opt.step()
            if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
                print(f"step {step:4d}  loss {loss.item():.4f} nats/char", flush=True)
        # Leave together: a peer tearing gloo down while the other still talks to it can abort
        # the other process ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world: int, args: argparse.Namespace, init_method: str) -> None:
    train(rank, world, args, init_method)


def parse(argv: Any = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--world-size", type=int, default=2, help="processes to start (not torchrun)")
    p.add_argument("--steps", type=int, default=50, help="training steps")
    p.add_argument("--batch", type=int, default=32, help="sequences per step, all processes")
    p.add_argument("--threads", type=int, default=1, help="torch/rnnfast threads per process")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0, help="the model's initial values")
    p.add_argument("--save-grads", default="", help="rank 0 writes step 0's gradients here")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a peer before giving up (gloo's default is 30 minutes)",
    )
    args = p.parse_args(argv)
    if args.world_size < 1 or args.batch % args.world_size:
        p.error("--batch must be a multiple of --world-size (>= 1)")
    if not args.timeout > 0:
        p.error("--timeout must be > 0 seconds")
    return args


def main(argv: Any = None) -> None:
    args = parse(argv)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # started by torchrun
        train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), args, "env://")
        return
    with tempfile.TemporaryDirectory() as tmp:  # rendezvous through a file: no port to pick
        init_method = f"file://{os.path.join(tmp, 'rendezvous')}"
        mp.spawn(_spawned, args=(args.world_size, args, init_method), nprocs=args.world_size)


if __name__ == "__main__":
    main()
