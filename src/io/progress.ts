/**
 * A progress bar on stderr for long runs: done/total, images per second, ETA. Only for a person watching a
 * terminal: nothing when stderr is a pipe or file, under CI (env CI set), or with --quiet.
 */
import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';

export interface Progress {
  /** `n` more inputs are done (written, or failed). */
  tick(n?: number): void;
  /** Remove the bar; call once at the end, also on errors. */
  stop(): void;
}

export interface ProgressOptions {
  stderr: NodeJS.WritableStream;
  quiet: boolean;
  /** Environment consulted for CI; default process.env. */
  env?: NodeJS.ProcessEnv;
}

const NO_PROGRESS: Progress = { tick: () => undefined, stop: () => undefined };

/** Whether a bar would be shown for these options (a TTY stderr, not CI, not quiet). */
export function progressEnabled(opts: ProgressOptions): boolean {
  const env = opts.env ?? process.env;
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== '0' && env.CI.toLowerCase() !== 'false';
  return !opts.quiet && !ci && (opts.stderr as { isTTY?: boolean }).isTTY === true;
}

export function createProgress(total: number, opts: ProgressOptions): Progress {
  if (total <= 0 || !progressEnabled(opts)) return NO_PROGRESS;
  // Loaded only for a bar (most runs write to a pipe or file); required because this function is synchronous.
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
  const bar = new cliProgress.SingleBar({
    stream: opts.stderr,
    format: '{bar} {value}/{total} | {rate} images/s | ETA {eta_formatted}',
    barsize: 30,
    // Batches finish in bursts; a longer window keeps the ETA from jumping with each one.
    etaBuffer: 50,
    fps: 5,
    clearOnComplete: true,
    hideCursor: false,
  }, cliProgress.Presets.shades_classic);
  const t0 = performance.now();
  let done = 0;
  bar.start(total, 0, { rate: '-' });
  let stopped = false;
  return {
    tick(n = 1) {
      if (stopped) return;
      done += n;
      const secs = (performance.now() - t0) / 1000;
      bar.update(done, { rate: secs > 0 ? (done / secs).toFixed(1) : '-' });
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
