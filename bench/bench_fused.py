"""Fused packing (xspec/runtime/fused.py) vs sequential members: one MMCL forward+backward and
optimiser step of K same-architecture models on one shared batch, K = 1, 4, 8, on this machine's
CPU (or `--device cuda`). Prints ms per step of both and their ratio (fused / sequential: < 1 is
a gain). Rounds alternate the order of the two.

Usage: .venv/bin/python bench/bench_fused.py [--arch xspec-vit-tiny] [--batch 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from xspec.runtime import models
from xspec.runtime.fused import FusedPack, mmcl_of


def _members(arch, k, device):
    return [models.create(arch, "scratch", device, log=lambda _: None).train() for _ in range(k)]


def _inputs(model, batch, device):
    side = model.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    return (torch.rand(batch, 3, side, side, device=device),
            torch.randint(1, 400, (batch, model.context_length), device=device))


def _time(step, device, reps=3):
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1000


def bench(arch, k, batch, rounds, device):
    ms = _members(arch, k, device)
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in ms]
    images, texts = _inputs(ms[0], batch, device)
    pack = FusedPack(ms)

    def sequential():
        for m, opt in zip(ms, opts):
            opt.zero_grad()
            mmcl_of(m(images, texts)).backward()
            opt.step()

    def fused():
        for opt in opts:
            opt.zero_grad()
        pack.backward(images, texts)
        for opt in opts:
            opt.step()

    seq, fus = [], []
    for r in range(rounds):
        order = [(sequential, seq), (fused, fus)]
        for fn, out in (order if r % 2 == 0 else order[::-1]):
            out.append(_time(fn, device))
    return min(seq), min(fus)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="xspec-vit-tiny")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ks", default="1,4,8")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"{args.arch}, batch {args.batch}, {device}, {torch.get_num_threads()} threads")
    print(f"{'K':>3} {'sequential ms':>14} {'fused ms':>10} {'fused/seq':>10}")
    for k in (int(x) for x in args.ks.split(",")):
        seq, fus = bench(args.arch, k, args.batch, args.rounds, device)
        print(f"{k:>3} {seq:>14.1f} {fus:>10.1f} {fus / seq:>10.2f}")


if __name__ == "__main__":
    main()
