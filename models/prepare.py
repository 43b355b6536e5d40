#!/usr/bin/env python3
"""Build the corpus, train the BPE vocabulary and tokenize the data.

Input: the King James Bible as printed by Debian's bible-kjv (text from
bible-kjv-text, public domain): `bible -l0 gen1:1-rev22:21`.

Output in --out:
  tokenizer.json   tokens, merges, special ids
  train.bin        uint16 token stream the model trains on
  val.bin          uint16 token stream of the held-out chapters
  val.txt          the held-out chapters as text (perplexity checks)
  words.txt        every word of the training chapters, lower-case, sorted
  encode.tsv       sample lines and their token ids (tokenizer parity test)

Chapters are documents, each preceded by <|endoftext|>. Every 40th chapter
is held out. After each training chapter come chat exchanges in ChatML, one
per eight verses of the chapter (a random verse as the user turn, the next
verse as the assistant turn), so the model learns to close its turn with
<|im_end|> under the chat template.
"""

import argparse
import array
import json
import os
import random
import re
import subprocess
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402

HOLDOUT_EVERY = 40


def read_kjv(path):
    if path:
        text = open(path, encoding="utf-8").read()
    else:
        text = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    chapters, cur, name = [], [], None
    for line in text.splitlines():
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:
            cur.append(m.group(1).strip())
        elif line.strip():
            if cur:
                chapters.append((name, cur))
            name, cur = line.strip(), []
    if cur:
        chapters.append((name, cur))
    return chapters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kjv", help="KJV text as printed by `bible -l0` (default: run bible)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)

    chapters = read_kjv(a.kjv)
    nverses = sum(len(v) for _, v in chapters)
    print(f"corpus: {len(chapters)} chapters, {nverses} verses", flush=True)
    train_ch = [c for i, c in enumerate(chapters) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    val_ch = [c for i, c in enumerate(chapters) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    docs = ["\n".join(v) + "\n" for _, v in train_ch]
    vdocs = ["\n".join(v) + "\n" for _, v in val_ch]

    tokens, merges = bpe.train(docs, a.vocab)
    enc = bpe.Encoder(tokens, merges)
    sid = {s: tokens.index(s) for s in bpe.SPECIALS}
    print(f"vocab: {len(tokens)} tokens, {len(merges)} merges", flush=True)

    eot, ims, ime = sid["<|endoftext|>"], sid["<|im_start|>"], sid["<|im_end|>"]
    nl = enc.encode("\n")

    def chat(u, v):
        return [ims] + enc.encode("user\n" + u) + [ime] + nl + [ims] + enc.encode("assistant\n" + v) + [ime] + nl

    stream = []
    for _, verses in train_ch:
        stream += [eot] + enc.encode("\n".join(verses) + "\n")
        # One chat exchange per eight verses, from this chapter.
        for _ in range(max(1, len(verses) // 8)):
            if len(verses) < 2:
                break
            i = rng.randrange(len(verses) - 1)
            stream += [eot] + chat(verses[i], verses[i + 1])
    vstream = []
    for d in vdocs:
        vstream += [eot] + enc.encode(d)
    array.array("H", stream).tofile(open(os.path.join(a.out, "train.bin"), "wb"))
    array.array("H", vstream).tofile(open(os.path.join(a.out, "val.bin"), "wb"))
    print(f"tokens: train {len(stream)}, val {len(vstream)}; bytes/token {sum(map(len, docs)) / len(stream):.2f}", flush=True)

    with open(os.path.join(a.out, "val.txt"), "w") as f:
        f.write("".join(vdocs))
    words = set()
    for d in docs:
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", d))
    with open(os.path.join(a.out, "words.txt"), "w") as f:
        f.write("\n".join(sorted(words)) + "\n")
    with open(os.path.join(a.out, "encode.tsv"), "w") as f:
        lines = [v for _, vs in val_ch for v in vs]
        for line in rng.sample(lines, 200) + ["Hello, world! It's 2026 -- isn't it?  Tabs\tand\nnew lines.", "naïve café 東京"]:
            f.write(json.dumps(line) + "\t" + " ".join(map(str, enc.encode(line))) + "\n")
    with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
        json.dump({"tokens": tokens, "merges": merges, "eot": eot, "im_start": ims, "im_end": ime}, f)


if __name__ == "__main__":
    main()
