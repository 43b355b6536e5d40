"""Byte-level BPE (GPT-2 style) trained from scratch on the corpus.

The vocabulary is what llama.cpp calls tokenizer.ggml.model "gpt2" with
tokenizer.ggml.pre "gpt-2": text is split by the GPT-2 regular expression,
each piece's UTF-8 bytes are mapped to printable characters (bytes_to_unicode)
and merged pair by pair in merge-rank order. Ids 0..255 are the 256 byte
symbols, so every byte string is encodable (no unknown token); merges follow;
the special tokens come last.
"""

import collections

import regex

# The GPT-2 pre-tokenizer (tokenizer.ggml.pre "gpt-2" in llama.cpp).
GPT2_SPLIT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()
U2B = {v: k for k, v in B2U.items()}


def pieces(text):
    """Pre-tokenize text and map each piece to byte-level characters."""
    return ["".join(B2U[b] for b in p.encode("utf-8")) for p in GPT2_SPLIT.findall(text)]


def train(texts, vocab_size):
    """Learn merges until the vocabulary (bytes + merges + specials) has vocab_size tokens.

    Standard incremental BPE over word-type counts: pair counts are kept up
    to date by touching only the words that contain the merged pair. Ties
    break on the lexicographically smallest pair so training is deterministic.
    """
    counts = collections.Counter()
    for t in texts:
        counts.update(pieces(t))
    words = [list(w) for w in counts]
    freq = [counts[w] for w in counts]
    pair_count = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freq[i]
            where[(a, b)].add(i)
    vocab = [B2U[b] for b in range(256)]
    merges = []
    n_merges = vocab_size - 256 - len(SPECIALS)
    while len(merges) < n_merges and pair_count:
        best = max(pair_count.items(), key=lambda kv: (kv[1], kv[0]))
        (a, b), c = best
        if c < 2:
            break
        merges.append(a + " " + b)
        new = a + b
        vocab.append(new)
        for i in list(where[(a, b)]):
            w = words[i]
            f = freq[i]
            for x, y in zip(w, w[1:]):
                pair_count[(x, y)] -= f
                if pair_count[(x, y)] <= 0:
                    del pair_count[(x, y)]
                where[(x, y)].discard(i)
            out = []
            j = 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_count[(x, y)] += f
                where[(x, y)].add(i)
        where.pop((a, b), None)
        pair_count.pop((a, b), None)
    return vocab + SPECIALS, merges


class Encoder:
    """Rank-ordered BPE encoding, as llama.cpp's gpt2 tokenizer does it."""

    def __init__(self, tokens, merges):
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.cache = {}

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        syms = list(w)
        while len(syms) > 1:
            best, bi = None, -1
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            syms[bi:bi + 2] = [syms[bi] + syms[bi + 1]]
        out = [self.ids[s] for s in syms]
        self.cache[w] = out
        return out

    def encode(self, text):
        out = []
        for p in pieces(text):
            out.extend(self.word(p))
        return out

    def decode(self, ids):
        return bytes(U2B[c] for i in ids if self.tokens[i] not in SPECIALS for c in self.tokens[i]).decode("utf-8", "replace")
