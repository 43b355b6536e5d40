#!/usr/bin/env python3
"""Train hypha-kjv-tiny: a small llama-architecture model on the KJV Bible.

The forward pass is exactly the one inference/engine runs for
general.architecture "llama": token embedding; per layer RMSNorm ->
attention (RoPE on adjacent pairs (2i, 2i+1), GQA with query head h using
KV head h / (heads / kv_heads), softmax(q.k / sqrt(head_dim))) -> residual
-> RMSNorm -> SwiGLU (down(silu(gate x) * up x)) -> residual; final RMSNorm;
logits by the tied token embedding (no output.weight in the GGUF).

Reads the output of prepare.py, writes checkpoints (ckpt.pt, resumable) and
a log of losses (train.log, JSON lines) into --out. Deterministic for a
given --seed and --steps on one thread count (CPU kernels may reorder sums
across thread counts). Without --steps, the learning-rate schedule runs
on wall time and training stops after --minutes: on a loaded shared machine
the step count then varies from run to run (train.log records it; pass it
as --steps to repeat a run step for step).
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, **kw):
        self.vocab = 2048
        self.dim = 128
        self.layers = 4
        self.heads = 4
        self.kv_heads = 2
        self.ffn = 384
        self.ctx = 128
        self.eps = 1e-5
        self.rope_base = 10000.0
        self.__dict__.update(kw)

    @property
    def head_dim(self):
        return self.dim // self.heads


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, T):
    hd = cfg.head_dim
    inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()  # (T, hd/2)


def apply_rope(x, cos, sin):
    # x: (B, T, H, hd); rotate adjacent pairs (2i, 2i+1) — ggml "normal" RoPE.
    xs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xs[..., 0], xs[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.attn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.wq = nn.Linear(cfg.dim, cfg.heads * hd, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.heads * hd, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.gate = nn.Linear(cfg.dim, cfg.ffn, bias=False)
        self.up = nn.Linear(cfg.dim, cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.dim, bias=False)
        self.register_buffer("mask", torch.ones(cfg.ctx, cfg.ctx, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x, cos, sin):
        cfg = self.cfg
        B, T, _ = x.shape
        hd = cfg.head_dim
        h = self.attn_norm(x)
        q = apply_rope(self.wq(h).view(B, T, cfg.heads, hd), cos, sin)
        k = apply_rope(self.wk(h).view(B, T, cfg.kv_heads, hd), cos, sin)
        v = self.wv(h).view(B, T, cfg.kv_heads, hd)
        g = cfg.heads // cfg.kv_heads
        k = k.repeat_interleave(g, dim=2)
        v = v.repeat_interleave(g, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(self.mask[:T, :T], float("-inf")).softmax(-1)
        a = att @ v
        x = x + self.wo(a.transpose(1, 2).reshape(B, T, cfg.heads * hd))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embd = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        cos, sin = rope_tables(cfg, cfg.ctx)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02
                if n.endswith("wo.weight") or n.endswith("down.weight"):
                    std = 0.02 / math.sqrt(2 * cfg.layers)
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.embd(idx)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        return self.norm(x) @ self.embd.weight.t()


def batches(data, batch, ctx, gen):
    ix = torch.randint(len(data) - ctx - 1, (batch,), generator=gen)
    x = torch.stack([torch.from_numpy(data[i:i + ctx].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + ctx].astype(np.int64)) for i in ix.tolist()])
    return x, y


@torch.no_grad()
def evaluate(model, data, ctx, limit=None):
    """Mean next-token loss over consecutive windows of the held-out stream."""
    model.eval()
    n = (len(data) - 1) // ctx
    if limit:
        n = min(n, limit)
    tot, cnt = 0.0, 0
    for i in range(0, n, 8):
        xs, ys = [], []
        for j in range(i, min(n, i + 8)):
            s = data[j * ctx:(j + 1) * ctx + 1].astype(np.int64)
            xs.append(torch.from_numpy(s[:-1]))
            ys.append(torch.from_numpy(s[1:]))
        x, y = torch.stack(xs), torch.stack(ys)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum")
        tot += loss.item()
        cnt += y.numel()
    model.train()
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--steps", type=int, default=0, help="total steps (0: train for --minutes of wall time)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="{}", help="JSON overrides of Config")
    ap.add_argument("--init", help="start from the weights of this model.pt (a second stage; fresh optimizer and schedule)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    tok = json.load(open(os.path.join(a.data, "tokenizer.json")))
    cfg = Config(vocab=len(tok["tokens"]), **json.loads(a.config))
    train = np.fromfile(os.path.join(a.data, "train.bin"), dtype=np.uint16)
    val = np.fromfile(os.path.join(a.data, "val.bin"), dtype=np.uint16)
    model = Model(cfg)
    if a.init:
        init = torch.load(a.init)
        model.load_state_dict(init["model"])
        print(f"initialised from {a.init} ({init['steps']} steps)", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(a.seed)
    step, total, elapsed = 0, a.steps, 0.0
    ck = os.path.join(a.out, "ckpt.pt")
    if os.path.exists(ck):
        st = torch.load(ck)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step, total, elapsed = st["step"], st["total"], st["elapsed"]
        print(f"resumed at step {step}/{total}", flush=True)
    log = open(os.path.join(a.out, "train.log"), "a")
    print(f"params {nparams}, config {cfg.__dict__}, train tokens {len(train)}, val tokens {len(val)}", flush=True)
    warm = 20
    t0 = time.time() - elapsed
    last_ck = time.time()
    budget = a.minutes * 60
    while True:
        # Cosine decay to 10% over the run: over steps with --steps, else over
        # wall time (the machine's load varies; the run ends on time).
        prog = step / a.steps if a.steps else (time.time() - t0) / budget
        if prog >= 1:
            break
        lr = a.lr * min(1, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches(train, a.batch, cfg.ctx, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        el = time.time() - t0
        if step % 20 == 0:
            rec = {"step": step, "loss": round(loss.item(), 4), "lr": round(lr, 6), "elapsed": round(el, 1)}
            if step % 100 == 0:
                rec["val"] = round(evaluate(model, val, cfg.ctx, limit=32), 4)
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if time.time() - last_ck > 120:
            tmp = ck + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                        "total": total, "elapsed": time.time() - t0, "config": cfg.__dict__}, tmp)
            os.replace(tmp, ck)
            last_ck = time.time()
    el = time.time() - t0
    rec = {"step": step, "final": True, "elapsed": round(el, 1), "train": round(evaluate(model, train[:len(val)], cfg.ctx), 4),
           "val": round(evaluate(model, val, cfg.ctx), 4)}
    print(json.dumps(rec), flush=True)
    log.write(json.dumps(rec) + "\n")
    torch.save({"model": model.state_dict(), "config": cfg.__dict__, "steps": step, "elapsed": el},
               os.path.join(a.out, "model.pt"))
    print(f"done: {step} steps in {el:.0f}s", flush=True)


if __name__ == "__main__":
    main()
