// A progress line on stderr: redrawn in place on a terminal; when stderr is a file or a pipe,
// printed at every `every`-th call's count (and at the end), so logs stay short.

function clock(s: number): string {
  return `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
}

/** Returns a function that reports `done` of `total` with a bar, the text given and an ETA. */
export function progressLine(label: string, o: { every?: number; width?: number } = {}): (done: number, total: number, text: string) => void {
  const t0 = Date.now();
  const every = o.every ?? 1;
  const width = o.width ?? 24;
  return (done, total, text) => {
    const elapsed = (Date.now() - t0) / 1000;
    const eta = done > 0 ? (elapsed / done) * (total - done) : 0;
    const bar = '#'.repeat(Math.round((done / Math.max(1, total)) * width)).padEnd(width, '.');
    const line = `${label} ${done}/${total} [${bar}] ${text} ETA ${clock(eta)}`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}\x1b[K${done >= total ? '\n' : ''}`);
      return;
    }
    if (done % every === 0 || done >= total) console.error(line);
  };
}
