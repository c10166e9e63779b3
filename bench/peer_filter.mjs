// Runs LocalAI's own change filter (scripts/lib/backend-filter.mjs, MIT, read from the LocalAI tree
// that bench_changes.py --localai names)
//
// stdin:  {"peer": "/path/backend-filter.mjs", "repeat": N, "cases": [{includes, includesDarwin,
//          changedFiles, previousMatrix, protoRevisions}]}
// stdout: [{"filtered": ["<tag-suffix> (<platform-tag>)", ...], "filteredDarwin": [...],
//           "changedBackends": [...], "ms": <median milliseconds of one filterMatrix call>}]
import { pathToFileURL } from "node:url";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const { filterMatrix } = await import(pathToFileURL(input.peer).href);
const key = e => `${e["tag-suffix"] || ""} (${e["platform-tag"] || ""})`;
const out = [];
for (const c of input.cases) {
  const times = [];
  let result;
  for (let i = 0; i < (input.repeat || 1); i++) {
    const t = process.hrtime.bigint();
    result = filterMatrix(c);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  out.push({
    filtered: result.filtered.map(key),
    filteredDarwin: result.filteredDarwin.map(key),
    changedBackends: [...result.changedBackends].sort(),
    ms: times[Math.floor(times.length / 2)],
  });
}
process.stdout.write(JSON.stringify(out));
