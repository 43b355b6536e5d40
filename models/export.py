#!/usr/bin/env python3
"""Write a trained checkpoint as a GGUF (version 3) file for inference/engine.

Layout (inference/gguf/reader.go is the Go reference): magic "GGUF",
version 3, tensor count and metadata count (u64), metadata entries, tensor
infos (name, n_dims, dims in ggml order — innermost first —, type, offset),
padding to the 32-byte alignment, tensor data each aligned to 32 bytes.

A PyTorch Linear weight (out, in) is row-major with `in` innermost, which
is ggml's [in, out] layout as is: no transposition. RoPE is trained on
adjacent pairs, llama's ordering, so no q/k permutation either.
Matrices are written F16 (or Q8_0 with --q8), norm weights F32.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# GGUF metadata value types.
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
# ggml tensor types.
T_F32, T_F16, T_Q8_0 = 0, 1, 8
ALIGN = 32

CHATML = (
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)


def s(b, text):
    e = text.encode("utf-8")
    b += struct.pack("<Q", len(e)) + e


def kv(b, key, typ, val):
    s(b, key)
    b += struct.pack("<I", typ)
    if typ == U32:
        b += struct.pack("<I", val)
    elif typ == F32:
        b += struct.pack("<f", val)
    elif typ == BOOL:
        b += struct.pack("<B", 1 if val else 0)
    elif typ == STR:
        s(b, val)
    elif typ == ARR:
        at, items = val
        b += struct.pack("<IQ", at, len(items))
        for it in items:
            if at == STR:
                s(b, it)
            elif at == I32:
                b += struct.pack("<i", it)
            else:
                raise ValueError(at)
    else:
        raise ValueError(typ)


def q8_0(a):
    """ggml Q8_0: blocks of 32 as an F16 scale d = max|x|/127 and 32 int8 round(x/d)."""
    x = a.astype(np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0)
    q = np.rint(x * inv[:, None]).astype(np.int8)
    out = np.empty((x.shape[0], 34), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True, help="model.pt or ckpt.pt from train.py")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json from prepare.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="hypha-kjv-tiny")
    ap.add_argument("--q8", action="store_true", help="Q8_0 matrices instead of F16")
    ap.add_argument("--random", action="store_true", help="ignore the weights: random init of the same shape (test control)")
    a = ap.parse_args()

    st = torch.load(a.ckpt)
    cfg = st["config"]
    sd = {k: v.float().numpy() for k, v in st["model"].items()}
    if a.random:
        rng = np.random.default_rng(7)
        sd = {k: (np.ones_like(v) if v.ndim == 1 else rng.normal(0, 0.02, v.shape).astype(np.float32)) for k, v in sd.items()}
    tok = json.load(open(a.tokenizer))

    tensors = [("token_embd.weight", sd["embd.weight"])]
    for i in range(cfg["layers"]):
        p = f"blocks.{i}."
        for gname, tname in [("attn_norm.weight", "attn_norm.weight"), ("attn_q.weight", "wq.weight"),
                             ("attn_k.weight", "wk.weight"), ("attn_v.weight", "wv.weight"),
                             ("attn_output.weight", "wo.weight"), ("ffn_norm.weight", "ffn_norm.weight"),
                             ("ffn_gate.weight", "gate.weight"), ("ffn_up.weight", "up.weight"),
                             ("ffn_down.weight", "down.weight")]:
            tensors.append((f"blk.{i}.{gname}", sd[p + tname]))
    tensors.append(("output_norm.weight", sd["norm.weight"]))

    meta = bytearray()
    n_kv = 0

    def add(key, typ, val):
        nonlocal n_kv
        kv(meta, key, typ, val)
        n_kv += 1

    ntok = len(tok["tokens"])
    types = [1] * ntok
    for k in ("eot", "im_start", "im_end"):
        types[tok[k]] = 3  # control
    add("general.architecture", STR, "llama")
    add("general.name", STR, a.name + ("-random" if a.random else ""))
    add("general.description", STR, "Tiny demonstration model trained by Hypha on the King James Bible (public domain). "
                                    "It continues text in KJV style; it knows no facts and has no safety tuning.")
    add("general.license", STR, "public-domain training text; weights under the Hypha repository licence")
    add("general.file_type", U32, 7 if a.q8 else 1)
    add("llama.context_length", U32, cfg["ctx"])
    add("llama.embedding_length", U32, cfg["dim"])
    add("llama.block_count", U32, cfg["layers"])
    add("llama.feed_forward_length", U32, cfg["ffn"])
    add("llama.attention.head_count", U32, cfg["heads"])
    add("llama.attention.head_count_kv", U32, cfg["kv_heads"])
    add("llama.attention.layer_norm_rms_epsilon", F32, cfg["eps"])
    add("llama.rope.freq_base", F32, cfg["rope_base"])
    add("llama.rope.dimension_count", U32, cfg["dim"] // cfg["heads"])
    add("llama.vocab_size", U32, ntok)
    add("tokenizer.ggml.model", STR, "gpt2")
    add("tokenizer.ggml.pre", STR, "gpt-2")
    add("tokenizer.ggml.tokens", ARR, (STR, tok["tokens"]))
    add("tokenizer.ggml.token_type", ARR, (I32, types))
    add("tokenizer.ggml.merges", ARR, (STR, tok["merges"]))
    add("tokenizer.ggml.bos_token_id", U32, tok["eot"])
    add("tokenizer.ggml.eos_token_id", U32, tok["eot"])
    add("tokenizer.ggml.eot_token_id", U32, tok["im_end"])
    add("tokenizer.ggml.add_bos_token", BOOL, True)
    add("tokenizer.ggml.add_eos_token", BOOL, False)
    add("tokenizer.chat_template", STR, CHATML)

    infos = bytearray()
    blobs = []
    off = 0
    for name, arr in tensors:
        if arr.ndim == 1:
            typ, data = T_F32, arr.astype("<f4").tobytes()
        elif a.q8 and arr.shape[1] % 32 == 0:
            typ, data = T_Q8_0, q8_0(arr)
        else:
            typ, data = T_F16, arr.astype("<f2").tobytes()
        dims = list(reversed(arr.shape))
        s(infos, name)
        infos += struct.pack("<I", len(dims))
        for d in dims:
            infos += struct.pack("<Q", d)
        infos += struct.pack("<IQ", typ, off)
        blobs.append((off, data))
        off += len(data)
        off = (off + ALIGN - 1) // ALIGN * ALIGN

    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), n_kv) + bytes(meta) + bytes(infos)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        f.write(b"\0" * ((-len(head)) % ALIGN))
        base = f.tell()
        for o, data in blobs:
            f.write(b"\0" * (base + o - f.tell()))
            f.write(data)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {os.path.getsize(a.out)} bytes, {len(tensors)} tensors", flush=True)


if __name__ == "__main__":
    main()
