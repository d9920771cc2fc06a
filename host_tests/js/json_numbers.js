// Checks the firmware's JSON numbers the way JavaScript sees them.
//   node json_numbers.js <message.json> <bits.bin>
// message.json: a data acquisition message whose payload.values hold, in
// order, the float32 values whose little-endian bits are in bits.bin.
// For every value v (bits b) and its text t, the two conditions:
//   (a) Math.fround(JSON.parse(t)) has the bits b: t reads back as exactly v.
//       The one exception is -0: JSON.stringify(-0) is "0", so a JS-canonical
//       writer can only write 0 for it (and must).
//   (b) JSON.stringify(JSON.parse(t)) === t: t is what JavaScript writes.
// and for the whole message, JSON.stringify(JSON.parse(body)) === body: a
// verifier that re-serializes before checking the signature sees the bytes
// that were signed. Prints {"count", "failures": [first 20]} as JSON.
"use strict";
const fs = require("fs");

const body = fs.readFileSync(process.argv[2], "latin1"); // numbers are ASCII
const raw = fs.readFileSync(process.argv[3]);
const bits = new Uint32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
const cell = new Float32Array(1);
const cellBits = new Uint32Array(cell.buffer);

const start = body.indexOf('"values":[') + '"values":['.length;
const end = body.lastIndexOf("]}}");
const texts = body.slice(start, end).split(/[[\],]+/).filter((t) => t !== "");

const failures = [];
function fail(i, why) {
  if (failures.length < 20) {
    failures.push({ index: i, bits: "0x" + bits[i].toString(16).padStart(8, "0"), text: texts[i], why });
  }
}
if (texts.length !== bits.length) {
  failures.push({ why: "count", texts: texts.length, values: bits.length });
}
const n = Math.min(texts.length, bits.length);
for (let i = 0; i < n; i++) {
  const t = texts[i];
  const x = JSON.parse(t);
  cell[0] = x; // Math.fround(x), kept as bits
  const want = bits[i] === 0x80000000 ? 0 : bits[i];
  if (cellBits[0] !== want) fail(i, "reads back as bits 0x" + cellBits[0].toString(16));
  if (JSON.stringify(x) !== t) fail(i, "JSON.stringify writes " + JSON.stringify(x));
}
const whole = JSON.stringify(JSON.parse(body)) === body;
process.stdout.write(JSON.stringify({ count: n, whole, failures }));
