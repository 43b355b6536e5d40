// Reference harness: llama.cpp's prebuilt CPU library through node-llama-cpp.
// Used by the engine's parity tests and by `make bench-engine`.
//
//   node ref.mjs logits <model.gguf> <threads> <tok,tok,...> <vocab>-> {"logits": [[...vocab]...]} every position
//   node ref.mjs greedy <model.gguf> <threads> <n> <tok,...>   -> {"tokens": [...]} n greedy tokens
//   node ref.mjs parity <model.gguf> <threads> <tok,...> <vocab> <n> <out.f32>
//        -> {"tokens": [...]}; the logits of every position go to out.f32 as
//           little-endian float32 [positions][vocab] (JSON is too slow for 150k vocabularies)
//   node ref.mjs bench  <model.gguf> <threads> <pp> <tg>       -> {"pp_tps": x, "tg_tps": y}
//
// Output is one JSON line on stdout; errors go to stderr with a non-zero exit.
import { writeFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [mode, modelPath, threadsArg, ...rest] = process.argv.slice(2);
const threads = Number(threadsArg) || 1;

function argmax(map) {
  let best = -1, bv = -Infinity;
  for (const [tok, v] of map) if (v > bv || (v === bv && tok < best)) { best = tok; bv = v; }
  return best;
}

function toArray(map, n) {
  const out = new Array(n).fill(null);
  for (const [tok, v] of map) out[tok] = v;
  return out;
}

async function main() {
  const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, logLevel: LlamaLogLevel.error, maxThreads: threads });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
  const context = await model.createContext({ contextSize: 2048, batchSize: 512, threads: { ideal: threads, min: threads }, flashAttention: false, sequences: 1 });
  const seq = context.getSequence();
  let result;
  async function greedy(n, toks) {
    const gen = [];
    const items = toks.map((t, i) => (i === toks.length - 1 ? [t, { generateNext: { logits: true } }] : t));
    let outs = await seq.controlledEvaluate(items);
    for (let i = 0; i < n; i++) {
      const next = argmax(outs[outs.length - 1].next.logits);
      gen.push(next);
      if (i === n - 1) break;
      outs = await seq.controlledEvaluate([[next, { generateNext: { logits: true } }]]);
    }
    return gen;
  }
  async function logits(toks, n) {
    const items = toks.map((t) => [t, { generateNext: { logits: true } }]);
    const outs = await seq.controlledEvaluate(items);
    return outs.map((o) => {
      const m = o.next.logits;
      let size = n;
      if (!size) for (const k of m.keys()) size = Math.max(size, k + 1);
      return toArray(m, size);
    });
  }
  if (mode === "logits") {
    result = { logits: await logits(rest[0].split(",").map(Number), Number(rest[1]) || 0) };
  } else if (mode === "greedy") {
    result = { tokens: await greedy(Number(rest[0]), rest[1].split(",").map(Number)) };
  } else if (mode === "parity") {
    const toks = rest[0].split(",").map(Number);
    const l = await logits(toks, Number(rest[1]) || 0);
    await seq.clearHistory();
    const n = Number(rest[2]) || 0;
    const vocab = Number(rest[1]);
    const buf = new Float32Array(l.length * vocab);
    l.forEach((row, i) => row.forEach((v, j) => { buf[i * vocab + j] = v; }));
    writeFileSync(rest[3], Buffer.from(buf.buffer));
    result = { positions: l.length, tokens: n > 0 ? await greedy(n, toks) : [] };
  } else if (mode === "bench") {
    const pp = Number(rest[0]), tg = Number(rest[1]);
    const prompt = Array.from({ length: pp }, (_, i) => 100 + ((i * 7919) % 5000));
    // warm-up: one short evaluation, then clear
    await seq.controlledEvaluate([[prompt[0], { generateNext: { token: true } }]]);
    await seq.clearHistory();
    let t0 = performance.now();
    await seq.controlledEvaluate(prompt.map((t, i) => (i === pp - 1 ? [t, { generateNext: { token: true } }] : t)));
    const ppMs = performance.now() - t0;
    let tok = 200;
    t0 = performance.now();
    for (let i = 0; i < tg; i++) {
      await seq.controlledEvaluate([[tok, { generateNext: { token: true } }]]);
      tok = 200 + ((tok * 31) % 4000);
    }
    const tgMs = performance.now() - t0;
    result = { pp_tps: (pp * 1000) / ppMs, tg_tps: (tg * 1000) / tgMs, system_info: llama.systemInfo };
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((e) => {
  process.stderr.write(`ref.mjs: ${e?.stack ?? e}\n`);
  process.exit(1);
});
