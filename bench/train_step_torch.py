#!/usr/bin/env python3
"""train_step_torch.py — the PyTorch peer for `longcat train`: the same LongCat-Flash model
(SPEC §3: MLA with LoRA scales and interleaved RoPE, router with bias-corrected top-k and
identity experts, shortcut-connected MoE, dense SwiGLU) read from the same checkpoint, trained
with the same batch shape and torch.optim.AdamW; prints tokens/s of a training step as JSON.

usage: python3 train_step_torch.py MODEL_DIR --batch B --seq-len T --steps N --threads K
"""
import argparse, json, math, os, struct, sys, time

import torch
import torch.nn.functional as F


def load_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a:base + b]), dtype=dtypes[e["dtype"]]).reshape(e["shape"])
        out[name] = t.float()
    return out


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, theta):  # x [..., T, dr] interleaved pairs -> de-interleaved, as SPEC §3
    T, dr = x.shape[-2], x.shape[-1]
    inv = theta ** (-torch.arange(0, dr, 2, dtype=torch.float64) / dr)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
    c, s = ang.cos().float(), ang.sin().float()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.cat([x0 * c - x1 * s, x1 * c + x0 * s], -1)


class LongCat(torch.nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.c = cfg
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v) for k, v in w.items()
                                         if not k.startswith("model.mtp.") and "e_score_correction_bias" not in k})
        self.bias = {k: v for k, v in w.items() if "e_score_correction_bias" in k}

    def W(self, name):
        return self.p[name.replace(".", "__")]

    def mla(self, x, P):
        c = self.c
        B, T, H = x.shape
        nh, dn, dr, dv, qr, kvr = (c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"],
                                   c["v_head_dim"], c["q_lora_rank"], c["kv_lora_rank"])
        sq = math.sqrt(H / qr) if c.get("mla_scale_q_lora") else 1.0
        skv = math.sqrt(H / kvr) if c.get("mla_scale_kv_lora") else 1.0
        q = rms(x @ self.W(P + ".q_a_proj.weight").T, self.W(P + ".q_a_layernorm.weight"), 1e-6)
        q = (q @ self.W(P + ".q_b_proj.weight").T * sq).view(B, T, nh, dn + dr).transpose(1, 2)
        q = torch.cat([q[..., :dn], rope(q[..., dn:], c["rope_theta"])], -1)
        ckv = x @ self.W(P + ".kv_a_proj_with_mqa.weight").T
        lat = rms(ckv[..., :kvr], self.W(P + ".kv_a_layernorm.weight"), 1e-6) * skv
        kpe = rope(ckv[..., kvr:], c["rope_theta"])[:, None].expand(B, nh, T, dr)
        kv = (lat @ self.W(P + ".kv_b_proj.weight").T).view(B, T, nh, dn + dv).transpose(1, 2)
        k = torch.cat([kv[..., :dn], kpe], -1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dn + dr)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        o = torch.softmax(scores, -1) @ kv[..., dn:]
        return o.transpose(1, 2).reshape(B, T, nh * dv) @ self.W(P + ".o_proj.weight").T

    def ffn(self, x, P):
        return (F.silu(x @ self.W(P + ".gate_proj.weight").T) * (x @ self.W(P + ".up_proj.weight").T)) @ self.W(P + ".down_proj.weight").T

    def moe(self, x, L):
        c = self.c
        N, K = c["n_routed_experts"], c["moe_topk"]
        xf = x.reshape(-1, x.shape[-1])
        s = torch.softmax(xf @ self.W(f"model.layers.{L}.mlp.router.classifier.weight").T, -1)
        idx = torch.topk(s.detach() + self.bias[f"model.layers.{L}.mlp.router.e_score_correction_bias"], K, -1).indices
        wts = s.gather(1, idx) * c["routed_scaling_factor"]
        out = torch.zeros_like(xf)
        for e in range(N):  # expert-major: only routed tokens
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                out = out.index_add(0, tok, self.ffn(xf[tok], f"model.layers.{L}.mlp.experts.{e}") * wts[tok, slot, None])
        zero = (idx >= N).float() * wts  # identity experts: a scaled copy
        out = out + zero.sum(-1, keepdim=True) * xf
        return out.view_as(x)

    def forward(self, tokens):
        c = self.c
        eps = c["rms_norm_eps"]
        h = self.W("model.embed_tokens.weight")[tokens]
        for L in range(c["num_layers"]):
            P = f"model.layers.{L}"
            h = h + self.mla(rms(h, self.W(P + ".input_layernorm.0.weight"), eps), P + ".self_attn.0")
            x = rms(h, self.W(P + ".post_attention_layernorm.0.weight"), eps)
            m = self.moe(x, L)
            h = h + self.ffn(x, P + ".mlps.0")
            h = h + self.mla(rms(h, self.W(P + ".input_layernorm.1.weight"), eps), P + ".self_attn.1")
            h = h + self.ffn(rms(h, self.W(P + ".post_attention_layernorm.1.weight"), eps), P + ".mlps.1") + m
        return rms(h, self.W("model.norm.weight"), eps) @ self.W("lm_head.weight").T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    model = LongCat(cfg, load_safetensors(os.path.join(a.model, "model.safetensors")))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    V = cfg["vocab_size"]
    times = []
    for step in range(a.steps + 2):
        tok = torch.randint(0, V, (a.batch, a.seq_len + 1))
        t0 = time.perf_counter()
        logits = model(tok[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tok[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"tok_s": a.batch * a.seq_len / med, "step_s": med, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "blas": torch.__config__.show().count("OpenBLAS") > 0}))


if __name__ == "__main__":
    sys.exit(main())
