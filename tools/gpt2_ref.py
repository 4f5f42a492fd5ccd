#!/usr/bin/python3
# tools/gpt2_ref.py - an independent PyTorch implementation of GPT-2 (Hugging
# Face semantics and tensor names), used to produce reference fixtures for the
# C model and as the PyTorch side of `rlhf bench model`.
#
#   gpt2_ref.py logits CKPT.safetensors IDS OUT.safetensors  # IDS: "1,2,3;4,5,6" rows
#   gpt2_ref.py bench PRESET B T STEPS [THREADS]            # SFT step: fwd+bwd+AdamW, ms
#   gpt2_ref.py blas                                        # which BLAS torch uses (JSON)
#
# bench prints one JSON line: the median step time over STEPS steps after two
# warm-up steps, with torch.set_num_threads(THREADS) when given (ATen's
# OpenMP threads; OpenBLAS keeps its own pool, sized by OPENBLAS_NUM_THREADS).
#
# Only the standard library and torch (Debian's python3-torch) are used; the
# safetensors format is read and written here directly (8-byte little-endian
# header length, JSON header, raw little-endian data).
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I32": (torch.int32, 4),
          "I64": (torch.int64, 8)}


def st_read(path):
    """Returns ({name: tensor}, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        dt, size = DTYPES[e["dtype"]]
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=dt) if end > b else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def st_write(path, tensors, meta=None):
    """Writes {name: tensor} as safetensors (keys sorted, header padded to 8)."""
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for k in names:
        t = tensors[k].contiguous()
        code = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}[t.dtype]
        blob = t.numpy().tobytes()
        header[k] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class GPT2:
    """GPT-2 forward from a {HF name: tensor} dict (with or without 'transformer.')."""

    def __init__(self, params, n_head, eps=1e-5):
        self.p = {k[len("transformer."):] if k.startswith("transformer.") else k: v
                  for k, v in params.items()}
        self.n_head, self.eps = n_head, eps
        self.n_layer = 1 + max(int(k.split(".")[1]) for k in self.p if k.startswith("h."))

    def hidden(self, ids):
        p, B, T = self.p, ids.shape[0], ids.shape[1]
        x = p["wte.weight"][ids] + p["wpe.weight"][:T]
        C = x.shape[-1]
        H = self.n_head
        for i in range(self.n_layer):
            g = lambda n: p[f"h.{i}.{n}"]
            a = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), self.eps)
            qkv = a @ g("attn.c_attn.weight") + g("attn.c_attn.bias")  # Conv1D: [in, out]
            q, k, v = qkv.split(C, dim=-1)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
            mask = torch.ones(T, T, dtype=torch.bool).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
            m = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), self.eps)
            m = F.gelu(m @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"), approximate="tanh")
            x = x + m @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
        return F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], self.eps)

    def logits(self, ids):
        return self.hidden(ids) @ self.p["wte.weight"].T  # tied LM head


def cmd_logits(ckpt, ids_text, out):
    params, meta = st_read(ckpt)
    params = {k: v.double() for k, v in params.items()}  # reference values in float64
    n_head = int(meta.get("n_head", 0)) or 2
    model = GPT2(params, n_head, float(meta.get("layer_norm_epsilon", 1e-5)))
    ids = torch.tensor([[int(t) for t in row.split(",")] for row in ids_text.split(";")])
    logits = model.logits(ids)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    st_write(out, {"logits": logits.detach(), "ids": ids.to(torch.int32),
                   "loss": ce.detach().reshape(1)}, {"source": "tools/gpt2_ref.py"})
    print(f"mean next-token cross-entropy {ce.item():.10f}")


PRESETS = {  # name: (vocab, n_ctx, n_layer, n_head, n_embd); keep in step with models/gpt2.c
    "tiny": (64, 32, 2, 2, 32),
    "small": (264, 256, 4, 4, 256),
    "gpt2": (50257, 1024, 12, 12, 768),
}


def blas_info():
    """The BLAS torch calls for float GEMMs on the CPU. Debian's torch is built
    with BLAS_INFO=generic and links libblas.so.3, which the alternatives
    system points at OpenBLAS; when it is, its core and threads are read
    from the loaded library (the same one torch's GEMMs run in)."""
    import ctypes
    import re
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    info = {"torch": torch.__version__, "blas_info": m.group(1) if m else "?",
            "mkl": torch.backends.mkl.is_available(), "openblas_core": None, "openblas_threads": None,
            "libblas": None}
    try:
        with open("/proc/self/maps") as f:  # the BLAS libraries actually mapped
            paths = {l.split()[-1] for l in f if len(l.split()) >= 6}
        info["libblas"] = sorted(p for p in paths if "blas" in p.rsplit("/", 1)[-1])
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_corename.restype = ctypes.c_char_p
        info["openblas_core"] = ob.openblas_get_corename().decode()
        info["openblas_threads"] = ob.openblas_get_num_threads()
    except OSError:
        pass
    return info


def cmd_bench(preset, B, T, steps, threads=None):
    if threads:
        torch.set_num_threads(threads)
    V, ctx, L, H, C = PRESETS[preset]
    g = torch.Generator().manual_seed(0)
    p = {"wte.weight": torch.randn(V, C, generator=g) * 0.02, "wpe.weight": torch.randn(ctx, C, generator=g) * 0.02,
         "ln_f.weight": torch.ones(C), "ln_f.bias": torch.zeros(C)}
    for i in range(L):
        for n, shape in (("attn.c_attn", (C, 3 * C)), ("attn.c_proj", (C, C)),
                         ("mlp.c_fc", (C, 4 * C)), ("mlp.c_proj", (4 * C, C))):
            p[f"h.{i}.{n}.weight"] = torch.randn(*shape, generator=g) * 0.02
            p[f"h.{i}.{n}.bias"] = torch.zeros(shape[1])
        for n in ("ln_1", "ln_2"):
            p[f"h.{i}.{n}.weight"], p[f"h.{i}.{n}.bias"] = torch.ones(C), torch.zeros(C)
    for t in p.values():
        t.requires_grad_(True)
    model = GPT2(p, H)
    ids = torch.randint(0, V, (B, T + 1), generator=g)
    bench_report(preset, B, T, *bench_steps(
        lambda: F.cross_entropy(model.logits(ids[:, :-1]).reshape(-1, V), ids[:, 1:].reshape(-1)),
        list(p.values()), steps))


def bench_steps(loss_fn, params, steps):
    """SFT steps (loss, backward, AdamW lr 1e-4 without decay, as rlhf bench
    model), 2 untimed warm-up steps then `steps` timed: (sorted seconds, first loss)."""
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    times = []
    for s in range(steps + 2):
        t0 = time.perf_counter()
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s == 0:
            first_loss = loss.item()
        if s >= 2:  # warm-up steps are not timed
            times.append(time.perf_counter() - t0)
    times.sort()
    return times, first_loss


def bench_report(preset, B, T, times, first_loss):
    """The JSON line tools/bench_model.sh reads."""
    med = times[len(times) // 2]
    bi = blas_info()
    print(json.dumps({"side": "torch", "preset": preset, "B": B, "T": T, "ms": med * 1e3,
                      "ms_min": times[0] * 1e3, "ms_max": times[-1] * 1e3, "tokens_per_s": B * T / med,
                      "threads": torch.get_num_threads(), "openblas_core": bi["openblas_core"],
                      "openblas_threads": bi["openblas_threads"], "loss": first_loss}))

if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "logits":
        cmd_logits(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) in (6, 7) and sys.argv[1] == "bench":
        cmd_bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                  int(sys.argv[6]) if len(sys.argv) == 7 else None)
    elif len(sys.argv) == 2 and sys.argv[1] == "blas":
        print(json.dumps(blas_info()))
    else:
        sys.stderr.write(__doc__ if __doc__ else "usage: gpt2_ref.py logits|bench ...\n")
        sys.exit(2)
