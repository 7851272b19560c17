// A download progress display on stderr: a redrawn bar on a terminal, one line per finished file
// otherwise (CI logs).
import type { DownloadProgress } from './download.js';

function human(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function stderrProgress(stream: NodeJS.WriteStream = process.stderr): (p: DownloadProgress) => void {
  let lastFile = '';
  let lastDraw = 0;
  return (p) => {
    const done = p.total !== null && p.received >= p.total;
    if (stream.isTTY) {
      const now = Date.now();
      if (!done && now - lastDraw < 100) return;
      lastDraw = now;
      const frac = p.total ? p.received / p.total : 0;
      const width = 24;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      stream.write(`\r[${p.fileIndex + 1}/${p.fileCount}] ${p.file.slice(-40).padEnd(40)} [${bar}] ${human(p.received)}${p.total ? ` / ${human(p.total)}` : ''}\x1b[K`);
      if (done && p.fileIndex + 1 === p.fileCount) stream.write('\n');
    } else if (done && p.file !== lastFile) {
      lastFile = p.file;
      stream.write(`downloaded [${p.fileIndex + 1}/${p.fileCount}] ${p.file} (${human(p.received)})\n`);
    }
  };
}
