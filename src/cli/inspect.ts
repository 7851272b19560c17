// `diffusion-dpo inspect FILE`: the tensors of a safetensors file or PyTorch checkpoint. Nothing
// in the file is executed; a bad or hostile file gets a one-line error and exit status 1.
import * as torch from '../torch/index.js';
import { flagsHelp } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';

const INSPECT_FLAGS = {
  json: { type: 'boolean', default: false, help: 'print JSON instead of a table' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo inspect FILE [--json]

Lists the tensors (name, dtype, shape, bytes) of a .safetensors file or a PyTorch checkpoint
(.bin/.pt/.pth/.ckpt written by torch.save). Checkpoints are read with a restricted unpickler:
only tensors, dicts, lists, tuples, numbers and strings are accepted, and any other object is
refused without running anything.

options:
${flagsHelp(INSPECT_FLAGS, { width: 16 })}`;

export interface InspectRow {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
}

export function inspectFile(path: string): { format: 'safetensors' | 'pytorch'; tensors: InspectRow[]; metadata?: Record<string, string> } {
  let isZipOrPickle: boolean;
  try {
    isZipOrPickle = torch.isTorchCheckpoint(path);
  } catch (e) {
    throw new CliError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    if (isZipOrPickle) {
      const ckpt = torch.TorchCheckpoint.open(path);
      try {
        const tensors = ckpt.tensorRefs().map(([name, r]) => ({ name, dtype: r.dtype, shape: r.shape, bytes: r.nbytes }));
        return { format: 'pytorch', tensors };
      } finally {
        ckpt.close();
      }
    }
    const f = torch.SafetensorsFile.open(path);
    const tensors = [...f.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.end - t.begin }));
    f.close();
    return { format: 'safetensors', tensors, metadata: f.metadata };
  } catch (e) {
    if (e instanceof CliError) throw e;
    const msg = (e as Error).message;
    throw new CliError(msg.startsWith(path) ? msg : `${path}: ${msg}`);
  }
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

export const inspectCommand: Command = {
  summary: 'list the tensors of a safetensors file or PyTorch checkpoint',
  run(argv) {
    const { values, positionals } = parseCommandFlags('inspect', INSPECT_FLAGS, argv, { positionals: true });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (positionals.length !== 1) throw new CliError(`expected one FILE, got ${positionals.length}\n\n${HELP}`, 2);
    const r = inspectFile(positionals[0]!);
    if (values.json) {
      console.log(JSON.stringify(r, null, 2));
      return 0;
    }
    // loops, not Math.max(...rows): a checkpoint can hold more tensors than a call has room for arguments
    const rows = r.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`, humanBytes(t.bytes)]);
    const header = ['name', 'dtype', 'shape', 'bytes'];
    const widths = header.map((h) => h.length);
    for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i]!, c.length)));
    const fmt = (row: string[]) => row.map((c, i) => (i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
    const lines = [fmt(header)];
    for (const row of rows) lines.push(fmt(row));
    process.stdout.write(`${lines.join('\n')}\n`);
    let total = 0;
    let params = 0;
    for (const t of r.tensors) {
      total += t.bytes;
      params += t.shape.reduce((a, b) => a * b, 1);
    }
    console.log(`\n${r.tensors.length} tensors, ${params.toLocaleString('en-US')} values, ${humanBytes(total)} (${r.format})`);
    if (r.metadata && Object.keys(r.metadata).length) console.log(`metadata: ${JSON.stringify(r.metadata)}`);
    return 0;
  },
};
