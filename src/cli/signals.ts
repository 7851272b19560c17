// Graceful stops for long jobs. SIGINT (Ctrl-C) and SIGTERM (what SLURM, Kubernetes, systemd and
// `timeout` send) both ask the job to stop at its next safe point (training: the end of the
// current update, after saving a checkpoint); the exit code then says which signal it was (130,
// 143: 128 + the signal number, as a shell reports a killed process). A second signal of either
// kind exits at once (the same one repeated within 2 s counts as the first: launchers and
// terminals often deliver one stop twice).
import * as torch from '../torch/index.js';

const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
/** A repeat of the same signal within this long is the same stop, not a second one. */
const SAME_STOP_MS = 2000;
type StopSignal = keyof typeof EXIT_CODES;

export interface GracefulStop {
  readonly signal: AbortSignal;
  /** The exit code of the signal that asked to stop, or null. */
  readonly exitCode: number | null;
  dispose(): void;
}

export function gracefulStop(what: string, log: (msg: string) => void): GracefulStop {
  const abort = new AbortController();
  let received: StopSignal | null = null;
  let receivedAt = 0;
  const handlers = new Map<StopSignal, () => void>();
  for (const sig of Object.keys(EXIT_CODES) as StopSignal[]) {
    const handler = () => {
      // the same signal twice within a moment is one stop: a terminal's Ctrl-C reaches both
      // `launch` and its processes, which `launch` then also passes on (srun and torchrun likewise)
      if (received === sig && performance.now() - receivedAt < SAME_STOP_MS) return;
      if (received) {
        log(`${sig} again: exiting at once`);
        torch.exitNow(EXIT_CODES[sig]);
      }
      received = sig;
      receivedAt = performance.now();
      log(`${sig}: ${what}, then stopping (send it again to quit at once)`);
      abort.abort();
    };
    handlers.set(sig, handler);
    process.on(sig, handler);
  }
  return {
    signal: abort.signal,
    get exitCode() {
      return received ? EXIT_CODES[received] : null;
    },
    dispose() {
      for (const [sig, h] of handlers) process.removeListener(sig, h);
    },
  };
}
