#!/usr/bin/env python3
"""Eager PyTorch references for `moelab bench`: the same computations written the way a
researcher would in plain PyTorch, timed the same way, printed as one JSON object.

  moe        one MoE layer (top-k softmax router, GELU experts) forward+backward, as an eager
             loop over experts (index the expert's tokens, run its FFN, index_add back), and
             a dense FFN of the same active FLOPs (hidden k*H)
  sinkhorn   log-domain Sinkhorn on T x E logits to a relative column tolerance, checking the
             error (a host sync) after every iteration
  lm         training steps of moelab's LM (token embedding + learned positions, pre-LN blocks
             with causal attention and an MoE FFN, final LayerNorm, tied output head, AdamW,
             gradient clipping at 1.0) on random tokens: tokens per second
  image      training steps of moelab's image model (the quickstart ViT: square patches,
             linear embedding + learned positions, the same pre-LN blocks without the causal
             mask, final LayerNorm, mean pooling, linear head) on random images: images/s

Timings: wall time around a synchronised body (CUDA: torch.cuda.synchronize), median of the
repeats after one warm-up. Threads: --threads sets torch.set_num_threads (the CPU default is 1
BLAS thread beside it, set through the environment by the caller).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(device, repeats, body):
    body()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        body()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_steps(step, args, device):
    """Seconds of args.steps training steps after args.warmup untimed ones."""
    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return time.perf_counter() - start


class EagerMoE(nn.Module):
    """Top-k softmax router (softmax over the k chosen logits), experts as an eager loop."""

    def __init__(self, dim, experts, hidden, k, aux_coef=0.0):
        super().__init__()
        self.k, self.experts, self.aux_coef = k, experts, aux_coef
        self.gate = nn.Linear(dim, experts, bias=False)
        bound_in, bound_out = 1 / math.sqrt(dim), 1 / math.sqrt(hidden)
        self.w_in = nn.Parameter(torch.empty(experts, dim, hidden).uniform_(-bound_in, bound_in))
        self.b_in = nn.Parameter(torch.zeros(experts, hidden))
        self.w_out = nn.Parameter(torch.empty(experts, hidden, dim).uniform_(-bound_out, bound_out))
        self.b_out = nn.Parameter(torch.zeros(experts, dim))

    def forward(self, x):  # x: [T, D] -> y [T, D], aux loss
        logits = self.gate(x.float())                       # [T, E]
        top_logits, index = logits.topk(self.k, dim=-1)     # [T, k]
        gates = top_logits.softmax(-1).to(x.dtype)          # [T, k]
        y = torch.zeros_like(x)
        for e in range(self.experts):
            token, slot = (index == e).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            hidden = F.gelu(x[token] @ self.w_in[e] + self.b_in[e])   # [n_e, H]
            out = hidden @ self.w_out[e] + self.b_out[e]              # [n_e, D]
            y = y.index_add(0, token, out * gates[token, slot].unsqueeze(1))
        aux = torch.zeros((), device=x.device)
        if self.aux_coef > 0:  # Switch balance loss: E * sum_e f_e * P_e
            probs = logits.softmax(-1)
            share = F.one_hot(index, self.experts).float().sum(1).mean(0) / self.k
            aux = self.aux_coef * self.experts * (share * probs.mean(0)).sum()
        return y, aux


def bench_moe(args, device):
    torch.manual_seed(0)
    x = torch.randn(args.tokens, args.dim, device=device, requires_grad=True)
    moe = EagerMoE(args.dim, args.experts, args.hidden, args.k).to(device)
    dense = nn.Sequential(nn.Linear(args.dim, args.k * args.hidden), nn.GELU(),
                          nn.Linear(args.k * args.hidden, args.dim)).to(device)

    def moe_step():
        y, aux = moe(x)
        (y.pow(2).mean() + aux).backward()

    def dense_step():
        dense(x).pow(2).mean().backward()

    return {"eager_loop_step_ms": 1e3 * median_seconds(device, args.repeats, moe_step),
            "dense_ffn_step_ms": 1e3 * median_seconds(device, args.repeats, dense_step)}


def sinkhorn_sync_every_iteration(log_kernel, tol, max_iters):
    m, n = log_kernel.shape
    log_col = torch.full((n,), math.log(m / n), device=log_kernel.device)
    f = torch.zeros(m, device=log_kernel.device)
    g = torch.zeros(n, device=log_kernel.device)
    for it in range(1, max_iters + 1):
        g = log_col - torch.logsumexp(log_kernel + f[:, None], 0)
        f = -torch.logsumexp(log_kernel + g[None, :], 1)
        colsum = torch.logsumexp(log_kernel + f[:, None], 0) + g
        if (colsum - log_col).exp().sub(1).abs().max().item() < tol:  # host sync
            return it
    return max_iters


def bench_sinkhorn(args, device):
    torch.manual_seed(0)
    logits = torch.randn(args.tokens, args.experts, device=device) * args.logit_std
    iterations = []
    seconds = median_seconds(device, args.repeats, lambda: iterations.append(
        sinkhorn_sync_every_iteration(logits, args.tol, args.max_iters)))
    return {"sync_every_iteration_ms": 1e3 * seconds, "iterations": iterations[-1]}


class Block(nn.Module):
    def __init__(self, args, causal=True):
        super().__init__()
        self.heads = args.heads
        self.causal = causal
        self.attention = args.attention
        self.norm_attn = nn.LayerNorm(args.dim)
        self.norm_ffn = nn.LayerNorm(args.dim)
        self.qkv = nn.Linear(args.dim, 3 * args.dim)
        self.proj = nn.Linear(args.dim, args.dim)
        self.moe = EagerMoE(args.dim, args.experts, args.hidden, args.k, args.aux_coef)

    def attend(self, x):  # [B, L, D]
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.attention == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:  # materialised scores, as moelab's reference attention
            scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
            if self.causal:
                future = torch.ones(l, l, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            out = scores.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, l, d))

    def forward(self, x):
        h = x + self.attend(self.norm_attn(x))
        y, aux = self.moe(self.norm_ffn(h).reshape(-1, h.shape[-1]))
        return h + y.view_as(h), aux


class EagerLM(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.embed = nn.Embedding(256, args.dim)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.positions = nn.Parameter(torch.randn(1, args.seq_len, args.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.depth))
        self.final_norm = nn.LayerNorm(args.dim)

    def forward(self, tokens):  # [B, L] -> logits [B, L, 256], aux loss
        h = self.embed(tokens) + self.positions[:, : tokens.shape[1]]
        aux = torch.zeros((), device=tokens.device)
        for block in self.blocks:
            h, block_aux = block(h)
            aux = aux + block_aux
        return self.final_norm(h) @ self.embed.weight.t(), aux


def bench_lm(args, device):
    torch.manual_seed(0)
    model = EagerLM(args).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    tokens = torch.randint(0, 256, (args.batch, args.seq_len + 1), device=device)

    def step():
        logits, aux = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), tokens[:, 1:].reshape(-1)) + aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    seconds = timed_steps(step, args, device)
    return {"tokens_per_second": args.steps * args.batch * args.seq_len / seconds,
            "steps": args.steps, "attention": args.attention}


class EagerViT(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.patch = args.patch
        patches = (args.side // args.patch) ** 2
        self.embed = nn.Linear(args.patch * args.patch, args.dim)
        self.positions = nn.Parameter(torch.randn(1, patches, args.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(args, causal=False) for _ in range(args.depth))
        self.final_norm = nn.LayerNorm(args.dim)
        self.head = nn.Linear(args.dim, args.classes)

    def forward(self, images):  # [B, side, side] -> logits [B, classes], aux loss
        b, side, p = images.shape[0], images.shape[1], self.patch
        g = side // p
        patches = images.reshape(b, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(b, g * g, p * p)
        h = self.embed(patches) + self.positions
        aux = torch.zeros((), device=images.device)
        for block in self.blocks:
            h, block_aux = block(h)
            aux = aux + block_aux
        return self.head(self.final_norm(h).mean(1)), aux


def bench_image(args, device):
    torch.manual_seed(0)
    model = EagerViT(args).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    images = torch.randn(args.batch, args.side, args.side, device=device)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)

    def step():
        logits, aux = model(images)
        loss = F.cross_entropy(logits, labels) + aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    seconds = timed_steps(step, args, device)
    return {"images_per_second": args.steps * args.batch / seconds, "steps": args.steps,
            "attention": args.attention}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["moe", "sinkhorn", "lm", "image"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = leave")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512, help="expert hidden width")
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--logit-std", type=float, default=1.0)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iters", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--aux-coef", type=float, default=0.01)
    parser.add_argument("--attention", choices=["manual", "sdpa"], default="manual")
    parser.add_argument("--side", type=int, default=28, help="image: image side in pixels")
    parser.add_argument("--patch", type=int, default=7, help="image: patch side")
    parser.add_argument("--classes", type=int, default=10, help="image: classes")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.what in ("lm", "image") and args.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        parser.error(f"--attention sdpa needs torch >= 2.0 (this is {torch.__version__})")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    benches = {"moe": bench_moe, "sinkhorn": bench_sinkhorn, "lm": bench_lm, "image": bench_image}
    result = benches[args.what](args, device)
    result["torch"] = torch.__version__
    result["device"] = (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
