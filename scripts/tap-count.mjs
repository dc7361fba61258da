// Reads tap's run output and prints the closing line CI reads: "N passed, N failed".
// tap ends its report with a line like "# { total: 26, pass: 25, fail: 1, skip: 2 }".
import { readFileSync } from 'node:fs';
const text = readFileSync(process.argv[2], 'utf8');
const m = [...text.matchAll(/#\s*\{\s*total:\s*(\d+)([^}]*)\}/g)].pop();
if (!m) {
  console.log('0 passed, 1 failed');
  process.exit(0);
}
const field = (k) => Number((new RegExp(`${k}:\\s*(\\d+)`).exec(m[2]) ?? [0, 0])[1]);
const pass = field('pass'), fail = field('fail'), skip = field('skip') + field('todo');
console.log(`${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`);
