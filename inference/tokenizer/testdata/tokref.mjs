// llama.cpp tokenizer reference (prebuilt library via node-llama-cpp, as
// installed by `make engine-refharness` into out/refharness).
//
//   node tokref.mjs <refharness dir> <vocab.gguf> <strings.json> <out.json> <bench text file> <bench reps>
//
// strings.json is a JSON array of strings. out.json receives
// {"plain": [[ids]...], "special": [[ids]...], "bench_tokens": n, "bench_ms": t, "bench_cpu_ms": c}:
// the ids of every string with parse_special false and true (add_special
// false, as test-tokenizer-0), and the time to tokenize the bench text
// <bench reps> times (wall and CPU time of the process).
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [dir, vocab, inPath, outPath, benchPath, repsArg] = process.argv.slice(2);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(dir, "node_modules/node-llama-cpp/dist/index.js")).href);
const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, logLevel: LlamaLogLevel.disabled });
const model = await llama.loadModel({ modelPath: vocab, vocabOnly: true });
const strings = JSON.parse(readFileSync(inPath, "utf8"));
const plain = strings.map((s) => Array.from(model.tokenize(s, false)));
const special = strings.map((s) => Array.from(model.tokenize(s, true)));
const bench = readFileSync(benchPath, "utf8");
const reps = Number(repsArg) || 1;
let n = 0;
model.tokenize(bench, false); // warm-up
const t0 = performance.now();
const c0 = process.cpuUsage();
for (let i = 0; i < reps; i++) n += model.tokenize(bench, false).length;
const c1 = process.cpuUsage(c0);
const ms = performance.now() - t0;
writeFileSync(outPath, JSON.stringify({ plain, special, bench_tokens: n, bench_ms: ms, bench_cpu_ms: (c1.user + c1.system) / 1000 }));
await model.dispose();
await llama.dispose();
