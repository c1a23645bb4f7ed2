import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../errors.js';

/** What every command gets from the CLI: its streams and the stderr loggers the shared flags control. */
export interface Context {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Human notes (warnings, summaries); silenced by --quiet. */
  note(msg: string): void;
  /** Details under --verbose: engine, backend, timings. */
  verbose(msg: string): void;
}

/**
 * What a command module gives: its options (with examples) and its handler. Its usage line and description
 * are in src/cli.ts, so that `vit --help` can list every command without loading their modules.
 */
export type CommandBody = Pick<CommandModule, 'builder' | 'handler'>;

/** Options naming the model, shared by every command that runs or describes one. */
export function modelOptions<T>(y: Argv<T>) {
  return y
    .option('model', {
      alias: 'm', type: 'string',
      describe: 'preset (B/16, vit_base_patch16_224, ...), model directory (config.json + weights) or hub id ORG/NAME; default: the bundled digits ViT',
    })
    .option('weights', { alias: 'w', type: 'string', describe: 'checkpoint file for the model' })
    .option('random-weights', { type: 'boolean', default: false, describe: 'run with seeded random weights (benchmarks, tests)' })
    .option('num-classes', { type: 'number', describe: 'override the number of classes' })
    .option('image-size', { type: 'string', describe: 'run at another resolution: S or HxW (position embeddings are resampled)' });
}

/** "384" or "384x512" → [h, w]. */
export function parseImageSize(s: string | undefined): [number, number] | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)(?:[x×,](\d+))?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--image-size takes S or HxW (e.g. 384 or 384x512), not "${s}"`);
  const h = Number(m[1]);
  const w = m[2] === undefined ? h : Number(m[2]);
  if (h <= 0 || w <= 0) throw new UsageError(`--image-size must be positive, not "${s}"`);
  return [h, w];
}
