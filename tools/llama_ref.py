#!/usr/bin/python3
# tools/llama_ref.py - an independent PyTorch (float64) implementation of the
# Llama family (Llama, Llama 3 rope scaling, Qwen2, Qwen3, Mistral) with
# Hugging Face semantics and tensor names, used to write tiny checkpoints in
# the exact Hugging Face directory layout plus reference outputs, against which
# the C Llama-family model is tested, and (in float32) as the PyTorch side of
# `rlhf bench model` for the Llama-family presets (tools/bench_model.sh).
#
#   python3 tools/llama_ref.py tests/fixtures/llama_ref
#   python3 tools/llama_ref.py bench PRESET B T STEPS [THREADS]  # SFT step: fwd+bwd+AdamW, ms
#
# (/usr/bin/python3 where another python3 without torch comes first on PATH.)
#
# bench times one SFT step of a preset's shape (BENCH_PRESETS below, the same
# as models/llama.c's rl_llama_config_preset) in float32: weights as
# torch.nn.Parameters drawn N(0, 0.02) from torch's generator (norms 1, biases
# 0, as the C side initialises them), random ids [B, T], the mean next-token
# cross-entropy over positions 0..T-2, backward, torch.optim.AdamW (lr 1e-4,
# no weight decay), zero_grad; two warm-up steps, then STEPS timed ones, with
# torch.set_num_threads(THREADS) when given. It prints one JSON line with the
# fields of tools/gpt2_ref.py's bench (median step ms, min, max, tokens/s,
# threads, the OpenBLAS core and threads from gpt2_ref.py's blas_info, the
# first step's loss). The fixture path below is unaffected by it.
# Configs (vocab 64, hidden 32, 2 layers, 4 heads, 2 kv heads, intermediate
# 48 unless said): llama_tiny (untied, theta 1e4, eps 1e-5), llama_tiny_sharded
# and llama_tiny_bf16 (its weights in two shards / in BF16), llama3_scaled
# (tied, theta 5e5, llama3 rope_scaling factor 8, low 1, high 4, original 16:
# at head_dim 8 one frequency is smoothed and three divided; the "keep" regime
# needs a wavelength under 16/4 and 2*pi is the shortest), qwen2_tiny (q/k/v
# bias, tied, theta 1e6, eps 1e-6), qwen3_tiny (q/k norms, head_dim 16, tied,
# theta 1e6, eps 1e-6), mistral_tiny (untied, theta 1e4, eps 1e-5).
#
# Rerunning it rewrites every file byte for byte (weights come from the
# script's own integer PRNG, not torch's, and every reduction runs on one
# thread; the float64 logits could differ in the last ulp only on a different
# BLAS). It takes a few seconds and asserts its own math as it goes: rotary
# at position 0 is the identity and depends on relative positions only; a
# position-by-position, head-by-head second forward agrees to 1e-12; GQA
# equals its MHA expansion (n_kv == n_heads) and the kv grouping matters;
# changing a later token leaves earlier logits bit-identical; each padded
# row's real positions equal its unpadded run; llama3 scaling changes the
# frequencies and the logits; the files read back equal what was computed.
#
# For each config NAME it writes OUT/NAME/:
#   config.json             the keys transformers 4.51's save_pretrained writes
#                           for that model_type (to_json_string: sorted keys,
#                           indent 2, trailing newline), fields the C side may
#                           ignore included
#   generation_config.json  what save_pretrained writes beside it
#                           (GenerationConfig.from_model_config)
#   model.safetensors       F32 (BF16 for llama_tiny_bf16) weights, HF names,
#                           __metadata__ {"format":"pt"}, tensors in the
#                           safetensors library's order (larger dtype first,
#                           then name; header padded with spaces to 8 bytes);
#                           lm_head.weight absent when tie_word_embeddings.
#                           llama_tiny_sharded instead has
#                           model-0000{1,2}-of-00002.safetensors and
#                           model.safetensors.index.json
#                           {"metadata":{"total_size":BYTES},"weight_map":{..}}
#   ref.safetensors         expected outputs (as tools/gpt2_ref.py's
#                           *_ref.safetensors: "ids", "logits", "loss", plus
#                           more), __metadata__ {"source":"tools/llama_ref.py"}:
#     ids            I32 [2,10]     unpadded batch, positions 0..9
#     logits         F64 [2,10,V]   logits of ids
#     hidden         F64 [2,10,C]   final-norm output (input of lm_head)
#     loss           F64 [1]        mean next-token cross-entropy of ids
#     pad_ids        I32 [3,10]     right-padded batch (pad id 0), lengths 10,6,3
#     pad_mask       I32 [3,10]     attention mask, 1 = real token
#     pad_logits     F64 [3,10,V]   logits of pad_ids under pad_mask; row b,
#                                   position t < len_b equals the unpadded run
#                                   of that row alone (asserted). Positions
#                                   with mask 0 hold what HF's eager attention
#                                   gives there (keys restricted to j <= t and
#                                   mask 1, position id t); compare only mask 1
#     inv_freq       F64 [hd/2]     rotary inverse frequencies after scaling
#     greedy_prompt  I32 [4]        a prompt
#     greedy_tokens  I32 [6]        its next 6 greedy tokens (argmax of the
#                                   last position, full recompute each step)
#     greedy_logits  F64 [6,V]      the last-position logits of each step; the
#                                   top-1/top-2 gap is >= 1e-3 at every step
#
# Which transformers semantics each piece follows (transformers 4.51,
# modeling_llama.py unless named):
#   LlamaRMSNorm       w * (x * rsqrt(mean(x^2) + eps)); eps inside the rsqrt,
#                      the weight applied after the normalisation (HF takes
#                      the statistic in float32; here everything is float64)
#   rotary             _compute_default_rope_parameters: inv_freq[i] =
#                      1 / theta^(2i/d), d = head_dim; LlamaRotaryEmbedding:
#                      emb = cat([f, f]) with f = pos * inv_freq, cos/sin times
#                      attention_scaling (1.0 for default and llama3);
#                      rotate_half(x) = cat(-x2, x1) with x1/x2 the first and
#                      second half of each head; q*cos + rotate_half(q)*sin.
#                      HF computes cos/sin in float32 even for a float64
#                      model; here they are float64
#   llama3 scaling     modeling_rope_utils._compute_llama3_parameters: by
#                      wavelen = 2*pi/inv_freq, keep if wavelen <
#                      orig/high_freq_factor, divide by factor if wavelen >
#                      orig/low_freq_factor, else (1-s)*f/factor + s*f with
#                      s = (orig/wavelen - low) / (high - low)
#   attention          LlamaAttention + eager_attention_forward: q/k/v/o
#                      projections (bias when attention_bias; Qwen2: q/k/v
#                      bias, no o bias), Qwen3Attention: q_norm/k_norm
#                      (RMSNorm over head_dim, one weight shared by all heads)
#                      on q and k per head BEFORE rotary, repeat_kv (query head
#                      h uses kv head h // (n_heads / n_kv)), scores *
#                      head_dim^-0.5, causal + padding mask, softmax, o_proj
#   LlamaMLP           down_proj(silu(gate_proj(x)) * up_proj(x)), no bias
#   decoder layer      x += attn(input_layernorm(x)); x += mlp(post_attention_
#                      layernorm(x)); then model.norm and lm_head (the
#                      embedding matrix when tie_word_embeddings)
#   Mistral            as Llama (sliding_window null: plain causal attention)
#   padding            position ids 0..T-1 for every row (what HF uses for a
#                      right-padded batch given only attention_mask)
#
# Weights: an approximately normal sample (Irwin-Hall, 12 uniforms from
# splitmix64) times 0.2, rounded to float32; norm weights 1 + 0.1 * sample;
# biases 0.2 * sample. The BF16 variant holds llama_tiny's float32 weights
# rounded to bfloat16 by round-to-nearest-even (torch's .to(torch.bfloat16),
# checked against a bit-level rounding here); its expected outputs are
# computed in float64 from those bfloat16 values. The sharded variant holds
# llama_tiny's weights and exactly its outputs.
#
# Only the standard library and torch (Debian's python3-torch) are used; the
# safetensors format is read and written here directly.
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

TRANSFORMERS_VERSION = "4.51.3"
ST_DTYPES = {  # name: (torch dtype, bytes, rank in the safetensors library's Dtype order)
    "BF16": (torch.bfloat16, 2, 8), "I32": (torch.int32, 4, 9), "F32": (torch.float32, 4, 11),
    "F64": (torch.float64, 8, 12), "I64": (torch.int64, 8, 13)}
ST_CODE = {v[0]: k for k, v in ST_DTYPES.items()}


# ---- safetensors ----------------------------------------------------------

def st_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def st_write(path, tensors, meta):
    """Writes {name: tensor} as the safetensors library does: "__metadata__"
    first, tensors by dtype (larger first) then name, compact JSON, header
    padded with spaces to a multiple of 8."""
    names = sorted(tensors, key=lambda k: (-ST_DTYPES[ST_CODE[tensors[k].dtype]][2], k))
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in names:
        blob = st_bytes(tensors[k])
        header[k] = {"dtype": ST_CODE[tensors[k].dtype], "shape": list(tensors[k].shape),
                     "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    """Returns ({name: tensor}, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        dt, size, _ = ST_DTYPES[e["dtype"]]
        b, end = e["data_offsets"]
        buf = bytearray(raw[8 + n + b:8 + n + end])
        t = (torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if dt == torch.bfloat16
             else torch.frombuffer(buf, dtype=dt))
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def write_json(path, obj):
    """transformers' to_json_string: indent 2, sorted keys, trailing newline."""
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ---- deterministic weights ------------------------------------------------

class Rng:
    """splitmix64; normal() is Irwin-Hall (sum of 12 uniforms - 6): integer
    and IEEE-exact arithmetic only, so every machine draws the same weights."""

    def __init__(self, seed):
        self.s = seed & (2**64 - 1)

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 31)

    def normal(self, n):
        return [sum((self.next() >> 11) * 2.0**-53 for _ in range(12)) - 6.0 for _ in range(n)]

    def tensor(self, shape, std, mean=0.0):
        n = math.prod(shape)
        t = torch.tensor(self.normal(n), dtype=torch.float64).reshape(shape)
        return (mean + std * t).to(torch.float32)


# ---- configs ----------------------------------------------------------------

def hf_config(family, c, dtype="float32"):
    """config.json as save_pretrained writes it for model_type family."""
    common = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                           "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM"}[family]],
        "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": c["hidden"], "initializer_range": 0.02, "intermediate_size": c["inter"],
        "max_position_embeddings": c["max_pos"], "model_type": family,
        "num_attention_heads": c["heads"], "num_hidden_layers": c["layers"],
        "num_key_value_heads": c["kv_heads"], "rms_norm_eps": c["eps"], "rope_theta": c["theta"],
        "tie_word_embeddings": c["tied"], "torch_dtype": dtype,
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": c["vocab"]}
    hd = c.get("head_dim", c["hidden"] // c["heads"])
    if family == "llama":
        common.update({"attention_bias": False, "head_dim": hd, "mlp_bias": False, "pretraining_tp": 1,
                       "rope_scaling": c.get("rope_scaling")})
    elif family in ("qwen2", "qwen3"):
        common.update({"max_window_layers": c["layers"], "rope_scaling": None, "sliding_window": None,
                       "use_sliding_window": False})
        if family == "qwen3":
            common.update({"attention_bias": False, "head_dim": hd})
    elif family == "mistral":
        common.update({"head_dim": hd, "sliding_window": None})
    return common


def generation_config():
    return {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
            "transformers_version": TRANSFORMERS_VERSION}


BASE = {"vocab": 64, "hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "inter": 48, "max_pos": 64,
        "eps": 1e-5, "theta": 10000.0, "tied": False}
CONFIGS = [  # (name, family, overrides, seed)
    ("llama_tiny", "llama", {}, 11),
    ("llama3_scaled", "llama", {"theta": 500000.0, "tied": True, "max_pos": 128, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}}, 12),
    ("qwen2_tiny", "qwen2", {"theta": 1000000.0, "eps": 1e-6, "tied": True}, 13),
    ("qwen3_tiny", "qwen3", {"theta": 1000000.0, "eps": 1e-6, "tied": True, "head_dim": 16}, 14),
    ("mistral_tiny", "mistral", {}, 15),
]


def param_shapes(family, cfg):
    """HF state-dict names and shapes in module order (the order the shards
    are filled in). Returns [(name, shape, kind)], kind: w, norm or bias."""
    C, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", C // H)
    qkv_bias = family == "qwen2" or cfg.get("attention_bias", False)
    o_bias = family != "qwen2" and cfg.get("attention_bias", False)
    out = [("model.embed_tokens.weight", (V, C), "w")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for n, rows in (("q", H * hd), ("k", KV * hd), ("v", KV * hd)):
            out.append((p + f"self_attn.{n}_proj.weight", (rows, C), "w"))
            if qkv_bias:
                out.append((p + f"self_attn.{n}_proj.bias", (rows,), "bias"))
        out.append((p + "self_attn.o_proj.weight", (C, H * hd), "w"))
        if o_bias:
            out.append((p + "self_attn.o_proj.bias", (C,), "bias"))
        if family == "qwen3":
            out.append((p + "self_attn.q_norm.weight", (hd,), "norm"))
            out.append((p + "self_attn.k_norm.weight", (hd,), "norm"))
        out += [(p + "mlp.gate_proj.weight", (I, C), "w"), (p + "mlp.up_proj.weight", (I, C), "w"),
                (p + "mlp.down_proj.weight", (C, I), "w"), (p + "input_layernorm.weight", (C,), "norm"),
                (p + "post_attention_layernorm.weight", (C,), "norm")]
    out.append(("model.norm.weight", (C,), "norm"))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (V, C), "w"))
    return out


def make_weights(family, cfg, seed):
    rng = Rng(seed)
    w = {}
    for name, shape, kind in param_shapes(family, cfg):
        w[name] = rng.tensor(shape, 0.1, 1.0) if kind == "norm" else rng.tensor(shape, 0.2)
    return w


# ---- the model --------------------------------------------------------------

def rope_inv_freq(cfg, hd):
    """_compute_default_rope_parameters, then _compute_llama3_parameters when
    rope_scaling says llama3 (float64 throughout)."""
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv
    assert rs["rope_type"] == "llama3", rs
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
    return torch.where(medium, smoothed, scaled)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(inv_freq, pos):
    """pos: [B,T] -> cos, sin [B,T,hd]."""
    f = pos.to(torch.float64)[..., None] * inv_freq
    emb = torch.cat((f, f), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x: [B,H,T,hd]; cos/sin: [B,T,hd]."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def repeat_kv(x, rep):
    B, KV, T, D = x.shape
    return x if rep == 1 else x[:, :, None].expand(B, KV, rep, T, D).reshape(B, KV * rep, T, D)


class LlamaRef:
    """Forward of a Llama-family model from its config.json dict and its
    {HF name: tensor} weights, in float64 (or dtype: the bench passes float32
    Parameters, which .to() keeps as they are, so autograd reaches them; the
    rotary angles are taken in float64 and cos/sin narrowed to dtype, as the
    C side does)."""

    def __init__(self, family, cfg, weights, dtype=torch.float64):
        self.family, self.cfg = family, cfg
        self.p = {k: v.to(dtype) for k, v in weights.items()}
        self.C, self.H, self.KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim", self.C // self.H)
        self.eps = cfg["rms_norm_eps"]
        self.inv_freq = rope_inv_freq(cfg, self.hd)

    def lin(self, x, name):
        y = x @ self.p[name + ".weight"].T
        b = self.p.get(name + ".bias")
        return y if b is None else y + b

    def hidden(self, ids, mask=None):
        p, B, T = self.p, ids.shape[0], ids.shape[1]
        H, KV, hd = self.H, self.KV, self.hd
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.int32)
        pos = torch.arange(T)[None].expand(B, T)
        cos, sin = rope_cos_sin(self.inv_freq, pos)
        x = p["model.embed_tokens.weight"][ids]
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # no-ops in float64
        allowed = torch.ones(T, T, dtype=torch.bool).tril()[None] & mask.bool()[:, None, :]  # [B,Tq,Tk]
        for i in range(self.cfg["num_hidden_layers"]):
            pre = f"model.layers.{i}."
            a = rms_norm(x, p[pre + "input_layernorm.weight"], self.eps)
            q = self.lin(a, pre + "self_attn.q_proj").view(B, T, H, hd)
            k = self.lin(a, pre + "self_attn.k_proj").view(B, T, KV, hd)
            v = self.lin(a, pre + "self_attn.v_proj").view(B, T, KV, hd)
            if self.family == "qwen3":
                q = rms_norm(q, p[pre + "self_attn.q_norm.weight"], self.eps)
                k = rms_norm(k, p[pre + "self_attn.k_norm.weight"], self.eps)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
            s = (q @ k.transpose(-1, -2)) * hd**-0.5
            att = s.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
            x = x + self.lin(y, pre + "self_attn.o_proj")
            m = rms_norm(x, p[pre + "post_attention_layernorm.weight"], self.eps)
            m = F.silu(self.lin(m, pre + "mlp.gate_proj")) * self.lin(m, pre + "mlp.up_proj")
            x = x + self.lin(m, pre + "mlp.down_proj")
        return rms_norm(x, p["model.norm.weight"], self.eps)

    def logits(self, ids, mask=None):
        h = self.hidden(ids, mask)
        head = self.p.get("lm_head.weight")
        if self.cfg["tie_word_embeddings"]:
            assert head is None, "a tied checkpoint has no lm_head.weight"
            head = self.p["model.embed_tokens.weight"]
        return h @ head.T, h


# ---- inputs -------------------------------------------------------------------

IDS = [[1, 5, 9, 33, 2, 60, 7, 7, 0, 63], [4, 4, 18, 51, 23, 42, 16, 8, 15, 11]]
PAD_ROWS = [IDS[0], IDS[1][:6], [3, 17, 29]]
PROMPTS = [[1, 5, 9, 33], [1, 12, 40, 7], [1, 30, 2, 55], [1, 8, 8, 21], [1, 44, 3, 19]]


def padded_batch():
    T = max(len(r) for r in PAD_ROWS)
    ids = torch.zeros(len(PAD_ROWS), T, dtype=torch.int64)
    mask = torch.zeros(len(PAD_ROWS), T, dtype=torch.int32)
    for b, r in enumerate(PAD_ROWS):
        ids[b, :len(r)] = torch.tensor(r)
        mask[b, :len(r)] = 1
    return ids, mask


def greedy(model, prompt, steps=6):
    """Next steps greedy tokens, recomputing the whole sequence each step;
    (tokens, last-position logits per step, smallest top-1/top-2 gap)."""
    seq, toks, rows, gap = list(prompt), [], [], float("inf")
    for _ in range(steps):
        lg = model.logits(torch.tensor([seq]))[0][0, -1]
        top = lg.topk(2).values
        gap = min(gap, (top[0] - top[1]).item())
        t = int(lg.argmax())
        toks.append(t)
        rows.append(lg)
        seq.append(t)
    return toks, torch.stack(rows), gap


# ---- self-checks ---------------------------------------------------------------

def check_model(name, family, cfg, weights, model, ids):
    g = torch.Generator().manual_seed(0)
    hd = model.hd
    # rotary at position 0 is the identity; the rotated dot product depends
    # only on the distance between the two positions
    x = torch.randn(1, 2, 3, hd, generator=g, dtype=torch.float64)
    c0, s0 = rope_cos_sin(model.inv_freq, torch.zeros(1, 3, dtype=torch.int64))
    assert torch.equal(apply_rope(x, c0, s0), x), "rotary at position 0 must be the identity"
    qv, kv = torch.randn(hd, generator=g, dtype=torch.float64), torch.randn(hd, generator=g, dtype=torch.float64)

    def rot(v, m):
        c, s = rope_cos_sin(model.inv_freq, torch.tensor([[m]]))
        return apply_rope(v.view(1, 1, 1, hd), c, s).view(hd)
    d1, d2 = rot(qv, 5) @ rot(kv, 2), rot(qv, 9) @ rot(kv, 6)
    assert abs(d1 - d2) < 1e-12, "rotary scores must depend on the relative position only"
    # RMSNorm with unit weight and no eps gives unit RMS
    y = rms_norm(x, torch.ones(hd, dtype=torch.float64), 0.0)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones((), dtype=torch.float64), atol=1e-14, rtol=0)
    # causal: changing a later token leaves earlier logits unchanged
    lg = model.logits(ids)[0]
    ids2 = ids.clone()
    ids2[:, 6] = (ids2[:, 6] + 17) % cfg["vocab_size"]
    lg2 = model.logits(ids2)[0]
    assert torch.equal(lg[:, :6], lg2[:, :6]), "a later token changed earlier logits"
    assert not torch.allclose(lg[:, 6:], lg2[:, 6:]), "the changed token changed nothing"
    # the position-by-position reading agrees with the batched one
    diff = (naive_logits(model, ids[1].tolist()) - lg[1]).abs().max().item()
    assert diff < 1e-12, f"{name}: naive vs batched forward {diff}"
    # GQA: duplicating each kv head's k/v rows for its query heads gives an
    # MHA model (n_kv == n_heads) with the same logits
    H, KV = model.H, model.KV
    if KV < H:
        rep = H // KV
        w2 = dict(weights)
        for k in weights:
            if ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
                t = weights[k].view(KV, hd, *weights[k].shape[1:])
                w2[k] = t.repeat_interleave(rep, dim=0).reshape(H * hd, *weights[k].shape[1:])
        cfg2 = dict(cfg, num_key_value_heads=H)
        mha = LlamaRef(family, cfg2, w2)
        assert mha.KV == mha.H
        diff = (mha.logits(ids)[0] - lg).abs().max().item()
        assert diff < 1e-12, f"GQA vs its MHA expansion: {diff}"
        # and the grouping is consecutive: swapping the kv heads changes the logits
        w3 = dict(weights)
        for k in weights:
            if ".self_attn.k_proj." in k:
                w3[k] = weights[k].view(KV, hd, *weights[k].shape[1:]).flip(0).reshape(weights[k].shape)
        assert not torch.allclose(LlamaRef(family, cfg, w3).logits(ids)[0], lg)
    # Qwen3's q/k norms are in the path
    if family == "qwen3":
        w4 = dict(weights)
        w4["model.layers.0.self_attn.q_norm.weight"] = weights["model.layers.0.self_attn.q_norm.weight"] * 2
        assert not torch.allclose(LlamaRef(family, cfg, w4).logits(ids)[0], lg)
    # llama3 scaling changes frequencies at these sizes
    if cfg.get("rope_scaling"):
        plain = rope_inv_freq(dict(cfg, rope_scaling=None), hd)
        changed = (plain != model.inv_freq).sum().item()
        assert changed >= 1, "llama3 scaling changed no frequency: make original_max_position_embeddings smaller"
        wl = 2 * math.pi / plain
        rs = cfg["rope_scaling"]
        old = rs["original_max_position_embeddings"]
        regimes = ["keep" if w < old / rs["high_freq_factor"] else "divide" if w > old / rs["low_freq_factor"]
                   else "smooth" for w in wl.tolist()]
        print(f"  {name}: llama3 regimes per frequency {regimes}, {changed}/{len(regimes)} changed")
        unscaled = LlamaRef(family, dict(cfg, rope_scaling=None), weights).logits(ids)[0]
        assert (unscaled - lg).abs().max().item() > 1e-3, "llama3 scaling hardly changes the logits"


def naive_logits(model, row):
    """The same model for one unpadded row, written position by position and
    head by head (rotation as explicit pairs (i, i + hd/2), softmax by hand):
    a second reading of the architecture for check_model to compare with."""
    p, c, hd, H, KV = model.p, model.cfg, model.hd, model.H, model.KV
    half, rep, eps = hd // 2, H // KV, model.eps

    def norm(v, w):
        return w * v / math.sqrt(sum(float(e) ** 2 for e in v) / v.shape[0] + eps)

    def rot(v, t):
        out = v.clone()
        for i in range(half):
            a = t * float(model.inv_freq[i])
            out[i] = v[i] * math.cos(a) - v[i + half] * math.sin(a)
            out[i + half] = v[i + half] * math.cos(a) + v[i] * math.sin(a)
        return out

    def lin(v, name):
        b = p.get(name + ".bias")
        return p[name + ".weight"] @ v + (0 if b is None else b)
    xs = [p["model.embed_tokens.weight"][tok].clone() for tok in row]
    for l in range(c["num_hidden_layers"]):
        pre = f"model.layers.{l}.self_attn."
        a = [norm(x, p[f"model.layers.{l}.input_layernorm.weight"]) for x in xs]
        qs, ks, vs = [], [], []
        for t, at in enumerate(a):
            q = lin(at, pre + "q_proj").view(H, hd)
            k = lin(at, pre + "k_proj").view(KV, hd)
            if model.family == "qwen3":
                q = torch.stack([norm(q[h], p[pre + "q_norm.weight"]) for h in range(H)])
                k = torch.stack([norm(k[h], p[pre + "k_norm.weight"]) for h in range(KV)])
            qs.append([rot(q[h], t) for h in range(H)])
            ks.append([rot(k[h], t) for h in range(KV)])
            vs.append(lin(at, pre + "v_proj").view(KV, hd))
        for t in range(len(xs)):
            heads = []
            for h in range(H):
                sc = [float(qs[t][h] @ ks[j][h // rep]) / math.sqrt(hd) for j in range(t + 1)]
                mx = max(sc)
                e = [math.exp(s - mx) for s in sc]
                heads.append(sum(e[j] / sum(e) * vs[j][h // rep] for j in range(t + 1)))
            xs[t] = xs[t] + lin(torch.cat(heads), pre + "o_proj")
        for t in range(len(xs)):
            m = norm(xs[t], p[f"model.layers.{l}.post_attention_layernorm.weight"])
            g = lin(m, f"model.layers.{l}.mlp.gate_proj")
            xs[t] = xs[t] + lin(g / (1 + torch.exp(-g)) * lin(m, f"model.layers.{l}.mlp.up_proj"),
                                f"model.layers.{l}.mlp.down_proj")
    head = p["model.embed_tokens.weight"] if c["tie_word_embeddings"] else p["lm_head.weight"]
    return torch.stack([head @ norm(x, p["model.norm.weight"]) for x in xs])


def bf16_rne(t32):
    """float32 -> bfloat16 bits by round-to-nearest-even, done on the bits."""
    u = t32.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return torch.where(r >= 0x8000, r - 0x10000, r).to(torch.int16)  # the 16 bits as int16


# ---- writing ---------------------------------------------------------------------

def write_model_files(d, weights, shards=None):
    """model.safetensors, or shards (lists of names) with their index."""
    meta = {"format": "pt"}
    if not shards:
        st_write(os.path.join(d, "model.safetensors"), weights, meta)
        return
    n = len(shards)
    wmap, total = {}, 0
    for i, names in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        st_write(os.path.join(d, fn), {k: weights[k] for k in names}, meta)
        for k in names:
            wmap[k] = fn
            total += len(st_bytes(weights[k]))
    assert sorted(wmap) == sorted(weights)
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": wmap})


def read_model_files(d):
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return st_read(os.path.join(d, "model.safetensors"))[0]
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        idx = json.load(f)
    out = {}
    for fn in sorted(set(idx["weight_map"].values())):
        t, meta = st_read(os.path.join(d, fn))
        assert meta == {"format": "pt"}
        out.update(t)
    assert sorted(out) == sorted(idx["weight_map"])
    assert idx["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in out.values())
    return out


def write_fixture(root, name, family, cfg, weights, shards=None):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "generation_config.json"), generation_config())
    write_model_files(d, weights, shards)
    back = read_model_files(d)  # what a reader gets is what we computed with
    assert sorted(back) == sorted(weights)
    for k in weights:
        assert back[k].dtype == weights[k].dtype and torch.equal(back[k], weights[k]), k
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    model = LlamaRef(family, cfg, back)
    ids = torch.tensor(IDS)
    check_model(name, family, cfg, back, model, ids)
    logits, hidden = model.logits(ids)
    V = cfg["vocab_size"]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    pids, pmask = padded_batch()
    plogits = model.logits(pids, pmask)[0]
    for b, r in enumerate(PAD_ROWS):  # padded rows' real positions = the row run alone
        alone = model.logits(torch.tensor([r]))[0][0]
        diff = (plogits[b, :len(r)] - alone).abs().max().item()
        assert diff < 1e-12, f"{name}: padded row {b} differs from its unpadded run by {diff}"
    assert (plogits[0] - logits[0]).abs().max().item() < 1e-12
    for prompt in PROMPTS:
        toks, glogits, gap = greedy(model, prompt)
        if gap >= 1e-3:
            break
    else:
        raise AssertionError(f"{name}: no prompt has a greedy top-1/top-2 gap >= 1e-3")
    ref = {"ids": ids.to(torch.int32), "logits": logits, "hidden": hidden, "loss": loss.reshape(1),
           "pad_ids": pids.to(torch.int32), "pad_mask": pmask, "pad_logits": plogits,
           "inv_freq": model.inv_freq.clone(), "greedy_prompt": torch.tensor(prompt, dtype=torch.int32),
           "greedy_tokens": torch.tensor(toks, dtype=torch.int32), "greedy_logits": glogits}
    st_write(os.path.join(d, "ref.safetensors"), {k: v.detach().contiguous() for k, v in ref.items()},
             {"source": "tools/llama_ref.py"})
    print(f"  {name}: loss {loss.item():.10f}, |logits| max {logits.abs().max().item():.3f}, "
          f"greedy {prompt} -> {toks} (gap {gap:.4f})")
    return logits


def main(root):
    torch.set_num_threads(1)
    os.makedirs(root, exist_ok=True)
    for name, family, over, seed in CONFIGS:
        c = dict(BASE, **over)
        cfg = hf_config(family, c)
        weights = make_weights(family, cfg, seed)
        logits = write_fixture(root, name, family, cfg, weights)
        if name != "llama_tiny":
            continue
        # the same weights over two shards: embeddings and layer 0, then the rest
        order = [n for n, _, _ in param_shapes(family, cfg)]
        cut = order.index("model.layers.1.self_attn.q_proj.weight")
        lg = write_fixture(root, "llama_tiny_sharded", family, cfg, weights, [order[:cut], order[cut:]])
        assert torch.equal(lg, logits)
        # the same weights rounded to bfloat16
        wb = {k: v.to(torch.bfloat16) for k, v in weights.items()}
        for k, v in weights.items():
            assert torch.equal(wb[k].view(torch.int16), bf16_rne(v)), k
        lb = write_fixture(root, "llama_tiny_bf16", family, hf_config(family, c, "bfloat16"), wb)
        print(f"  llama_tiny_bf16: max |logits - llama_tiny's| {(lb - logits).abs().max().item():.4f}")


# ---- bench ------------------------------------------------------------------------

BENCH_PRESETS = {  # name: (family, shape); keep in step with models/llama.c's rl_llama_config_preset
    "llama-tiny": ("llama", {"vocab": 64, "hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 8,
                             "inter": 48, "max_pos": 64, "eps": 1e-5, "theta": 10000.0, "tied": False}),
    "llama-mini": ("llama", {"vocab": 264, "hidden": 128, "layers": 4, "heads": 4, "kv_heads": 2, "head_dim": 32,
                             "inter": 352, "max_pos": 256, "eps": 1e-5, "theta": 10000.0, "tied": True}),
    "smollm2-135m": ("llama", {"vocab": 49152, "hidden": 576, "layers": 30, "heads": 9, "kv_heads": 3,
                               "head_dim": 64, "inter": 1536, "max_pos": 8192, "eps": 1e-5, "theta": 100000.0,
                               "tied": True}),
    "qwen2.5-0.5b": ("qwen2", {"vocab": 151936, "hidden": 896, "layers": 24, "heads": 14, "kv_heads": 2,
                               "head_dim": 64, "inter": 4864, "max_pos": 32768, "eps": 1e-6, "theta": 1000000.0,
                               "tied": True}),  # qwen2: q/k/v bias
}


def cmd_bench(preset, B, T, steps, threads=None):
    if threads:
        torch.set_num_threads(threads)
    if preset not in BENCH_PRESETS:
        sys.stderr.write(f"llama_ref.py bench: unknown preset '{preset}' ({', '.join(BENCH_PRESETS)})\n")
        sys.exit(2)
    family, c = BENCH_PRESETS[preset]
    if B < 1 or T < 2 or T > c["max_pos"] or steps < 1:
        sys.stderr.write(f"llama_ref.py bench: {preset} needs B >= 1, 2 <= T <= {c['max_pos']}, STEPS >= 1\n")
        sys.exit(2)
    cfg = hf_config(family, c)
    hd = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    assert hd == c["head_dim"], (preset, hd)
    g = torch.Generator().manual_seed(0)
    p = {}
    for name, shape, kind in param_shapes(family, cfg):
        t = (torch.ones(shape) if kind == "norm" else torch.zeros(shape) if kind == "bias"
             else torch.randn(*shape, generator=g) * 0.02)
        p[name] = torch.nn.Parameter(t)
    model = LlamaRef(family, cfg, p, torch.float32)
    assert all(model.p[k] is p[k] for k in p)  # the forward uses the Parameters themselves
    V = cfg["vocab_size"]
    ids = torch.randint(0, V, (B, T), generator=g)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpt2_ref import bench_steps, bench_report  # one timing loop and report for both families
    bench_report(preset, B, T, *bench_steps(
        lambda: F.cross_entropy(model.logits(ids)[0][:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1)),
        list(p.values()), steps))

if __name__ == "__main__":
    if len(sys.argv) in (6, 7) and sys.argv[1] == "bench":
        cmd_bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                  int(sys.argv[6]) if len(sys.argv) == 7 else None)
        sys.exit(0)
    if len(sys.argv) != 2:
        sys.stderr.write("usage: llama_ref.py OUT_DIR   (e.g. tests/fixtures/llama_ref)\n"
                         "       llama_ref.py bench PRESET B T STEPS [THREADS]\n")
        sys.exit(2)
    main(sys.argv[1])
