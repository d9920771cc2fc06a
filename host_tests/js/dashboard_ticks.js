// The dashboard's ticks(lo, hi, want), taken from its script: for each [lo, hi] of argv[3] (JSON), its ticks
// (JSON, one line each). argv[2]: the path of dashboard.js.
const src = require("fs").readFileSync(process.argv[2], "utf8");
const start = src.indexOf("function ticks(");
let depth = 0;
let end = -1;
for (let i = src.indexOf("{", start); i < src.length && end < 0; i++) {
  if (src[i] === "{") depth++;
  if (src[i] === "}" && --depth === 0) end = i + 1;
}
const ticks = eval("(" + src.slice(start, end) + ")");
for (const [lo, hi] of JSON.parse(process.argv[3])) console.log(JSON.stringify(ticks(lo, hi, 3)));
