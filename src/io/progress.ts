/**
 * A progress bar on stderr, for a person watching a terminal: nothing when stderr is a pipe or file, under CI
 * (env CI set), with --quiet, or when stdout is that same terminal (rows and bar would tear each other up).
 * Notes written while it shows (a file that failed, a SIGINT) go above it and stay; the bar is redrawn below.
 */
import { fstatSync } from 'node:fs';

export interface ProgressOptions {
  stderr: NodeJS.WritableStream;
  /** The run's stdout: no bar when it is the same terminal as stderr. */
  stdout?: NodeJS.WritableStream;
  quiet: boolean;
  /** Environment consulted for CI; default process.env. */
  env?: NodeJS.ProcessEnv;
}

const fdOf = (s: NodeJS.WritableStream | undefined) => (s as { fd?: number } | undefined)?.fd;
const isTTY = (s: NodeJS.WritableStream | undefined) => (s as { isTTY?: boolean } | undefined)?.isTTY === true;

/** Two terminal streams on the same device (a shell without redirection). */
function sameTerminal(a: NodeJS.WritableStream, b: NodeJS.WritableStream): boolean {
  const [fa, fb] = [fdOf(a), fdOf(b)];
  if (fa === undefined || fb === undefined) return true;
  try {
    return fstatSync(fa).rdev === fstatSync(fb).rdev;
  } catch {
    return true;
  }
}

/** Whether a bar would be shown for these options. */
export function progressEnabled(opts: ProgressOptions): boolean {
  const env = opts.env ?? process.env;
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== '0' && env.CI.toLowerCase() !== 'false';
  if (opts.quiet || ci || !isTTY(opts.stderr)) return false;
  return !(isTTY(opts.stdout) && sameTerminal(opts.stdout!, opts.stderr));
}

/**
 * Control characters (and DEL, C1) as escapes, so a file name in a note cannot move the cursor or clear the
 * screen. `keepNewlines`: for text whose lines are its own (a note of several lines), not a name or a message.
 */
export function escapeControls(s: string, keepNewlines = false): string {
  return s.replace(keepNewlines ? /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g : /[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

const clock = (secs: number) => {
  if (!Number.isFinite(secs)) return '--:--';
  const s = Math.round(secs);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
};

export interface Bar {
  /** `n` more units done. */
  tick(n?: number): void;
  /** Set the count done. */
  set(done: number): void;
  /** A note above the bar (`vit: ` prefixed by the caller's note function). */
  note(msg: string): void;
  /** Remove the bar; call once at the end, also on errors. */
  stop(): void;
}

export interface BarFormat {
  /** Label before the bar (a file name for downloads). */
  label?: string;
  /** How counts read: images, or bytes shown in MiB. */
  unit: 'images' | 'bytes';
}

/** The rate is smoothed over about this many seconds, so the ETA does not jump with each batch. */
const RATE_WINDOW_S = 8;
const FRAME_MS = 200;

/**
 * A bar over `total` units (null: unknown), drawn at most every FRAME_MS; `note` writes a line above it.
 * Without a terminal it draws nothing and notes go straight to `write`.
 */
export function createBar(total: number | null, opts: ProgressOptions & BarFormat & { write(msg: string): void }): Bar {
  if (!progressEnabled(opts) || total === 0) return { tick: () => undefined, set: () => undefined, note: opts.write, stop: () => undefined };
  const out = opts.stderr;
  const t0 = performance.now();
  let done = 0;
  let rate = NaN;
  let lastAt = t0;
  let lastDone = 0;
  let drawnAt = 0;
  let stopped = false;
  const fmt = (n: number) => (opts.unit === 'bytes' ? `${(n / 2 ** 20).toFixed(1)} MiB` : String(n));
  const line = () => {
    const width = Math.max(10, Math.min(30, ((out as { columns?: number }).columns ?? 80) - 60));
    const frac = total ? Math.min(1, done / total) : 0;
    const filled = Math.round(frac * width);
    const perSec = opts.unit === 'bytes' ? `${fmt(rate)}/s` : `${Number.isFinite(rate) ? rate.toFixed(1) : '-'} images/s`;
    const eta = total && rate > 0 ? clock((total - done) / rate) : '--:--';
    return `${opts.label ? `${opts.label} ` : ''}${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${fmt(done)}/${total ? fmt(total) : '?'} | ${perSec} | ETA ${eta}`;
  };
  const draw = (force = false) => {
    const now = performance.now();
    if (stopped || (!force && now - drawnAt < FRAME_MS)) return;
    drawnAt = now;
    out.write(`\r\x1b[2K${line()}`);
  };
  const clear = () => out.write('\r\x1b[2K');
  const update = () => {
    const now = performance.now();
    const dt = (now - lastAt) / 1000;
    if (dt >= 0.25) {
      // Exponential smoothing with a time constant of RATE_WINDOW_S.
      const inst = (done - lastDone) / dt;
      const a = 1 - Math.exp(-dt / RATE_WINDOW_S);
      rate = Number.isNaN(rate) ? done / ((now - t0) / 1000) : rate + a * (inst - rate);
      lastAt = now;
      lastDone = done;
    }
    draw();
  };
  draw(true);
  return {
    tick(n = 1) {
      done += n;
      update();
    },
    set(n) {
      done = n;
      update();
    },
    note(msg) {
      if (stopped) return opts.write(msg);
      clear();
      opts.write(msg);
      draw(true);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clear();
    },
  };
}
