#!/usr/bin/env python3
"""PyTorch peer for the GPU benchmark (not a test): a nanoGPT-equivalent GPT-2 trained on random
tokens with the same presets, batch and sequence length as `minicolossus train`.

Model: pre-LN blocks, tied wte/lm_head, GELU (tanh), F.scaled_dot_product_attention(is_causal=True),
bf16 autocast, fused AdamW (betas 0.9/0.95, weight decay 0.1 on 2-D weights), gradient clipping at
1.0, torch.compile. Vocabulary 50257 padded to 50304 (as nanoGPT, the loss runs over the padded
logits). Prints one line per step to stderr and, last, one JSON line on stdout:
  {"impl": "pytorch", "model": ..., "tokens_per_s": ..., "mfu": ..., "peak_mem_mb": ..., ...}
MFU uses the PaLM/nanoGPT count 6N + 12*L*C*T FLOPs per token (N without position embeddings),
against --peak-tflops (H100 SXM dense bf16: 989).
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: (layers, channels, heads, max context) -- the same table as src/model/gpt2.cpp.
PRESETS = {
    "tiny": (4, 128, 4, 128),
    "d6": (6, 384, 6, 1024),
    "d12": (12, 768, 12, 1024),
    "d24": (24, 1024, 16, 1024),
    "d36": (36, 1280, 20, 1024),
    "d48": (48, 1600, 25, 1024),
}
VOCAB = 50257
PADDED_VOCAB = 50304


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.nh = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.nh, C // self.nh).transpose(1, 2)
        k = k.view(B, T, self.nh, C // self.nh).transpose(1, 2)
        v = v.view(B, T, self.nh, C // self.nh).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.attn_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, L, C, NH, max_t):
        super().__init__()
        self.wte = nn.Embedding(PADDED_VOCAB, C)
        self.wpe = nn.Embedding(max_t, C)
        self.blocks = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, PADDED_VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="d12", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=0, help="tokens per sequence (default: the model's context)")
    ap.add_argument("--steps", type=int, default=30, help="measured steps")
    ap.add_argument("--warmup", type=int, default=5, help="steps run before measuring (compilation happens here)")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"],
                    help="bf16 autocast (the GPU comparison) or fp32 throughout (the CPU comparison: "
                         "minicolossus's cpu ops are fp32)")
    a = ap.parse_args()

    L, C, NH, max_t = PRESETS[a.model]
    T = a.seq or max_t
    if T > max_t:
        print(f"--seq {T} exceeds the context of {a.model} ({max_t})", file=sys.stderr)
        return 2
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench_pytorch.py: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    model = GPT(L, C, NH, max_t).to(dev)
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    n_flops_params = n_params - model.wpe.weight.numel()
    flops_per_token = 6 * n_flops_params + 12 * L * C * T

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=(dev.type == "cuda"))
    step_fn = model if a.no_compile else torch.compile(model)

    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed)
    times, losses = [], []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(a.warmup + a.steps):
        data = torch.randint(0, VOCAB, (a.batch, T + 1), device=dev, generator=gen)
        x, y = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = step_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()  # waits for the step, as the minicolossus trainer does when it logs the loss
        dt = time.perf_counter() - t0
        tps = a.batch * T / dt
        print(f"step {step:4d} loss {lv:.4f} {1000 * dt:8.1f} ms {tps:10.0f} tok/s"
              f"{'  (warmup)' if step < a.warmup else ''}", file=sys.stderr, flush=True)
        if step >= a.warmup:
            times.append(dt)
            losses.append(lv)

    dt = sum(times) / len(times)
    tps = a.batch * T / dt
    out = {
        "impl": "pytorch",
        "model": a.model,
        "batch": a.batch,
        "seq": T,
        "steps": len(times),
        "ms": 1000 * dt,
        "tokens_per_s": tps,
        "mfu": flops_per_token * tps / (a.peak_tflops * 1e12),
        "peak_mem_mb": (torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else 0.0,
        "loss": losses[-1],
        "params": n_params,
        "compile": not a.no_compile,
        "precision": a.precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
