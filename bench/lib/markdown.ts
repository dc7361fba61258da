/** Markdown output: tables, number formatting, and replacing one `## ` section of a document. */

export function mdTable(head: string[], rows: Array<Array<string | number>>, align?: Array<'l' | 'r'>): string {
  const sep = head.map((_, i) => ((align?.[i] ?? 'l') === 'r' ? '---:' : '---'));
  const line = (cells: Array<string | number>) => `| ${cells.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(head), line(sep), ...rows.map(line)].join('\n');
}

/** 1234567 -> `1,234,567`; fractional numbers to `digits` decimals. */
export function num(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * Replaces the section that starts with the line `heading` (up to the next heading of the
 * same or a higher level, or the end) by `body`, which includes its own heading line.
 * Appends it when the document has no such section; other sections are kept as they are.
 */
export function replaceSection(doc: string, heading: string, body: string): string {
  const level = /^#+/.exec(heading)![0].length;
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => l.trimEnd() === heading);
  const text = body.trimEnd() + '\n';
  if (start < 0) return doc.trimEnd() + '\n\n' + text;
  let end = lines.length;
  let inFence = false;
  for (let i = start + 1; i < lines.length; i++) {
    if (/^```/.test(lines[i]!)) inFence = !inFence;
    const m = /^(#+)\s/.exec(lines[i]!);
    if (!inFence && m && m[1]!.length <= level) {
      end = i;
      break;
    }
  }
  const before = lines.slice(0, start).join('\n');
  const after = lines.slice(end).join('\n');
  return (before ? before.trimEnd() + '\n\n' : '') + text + (after.trim() ? '\n' + after.trimStart() : '');
}
