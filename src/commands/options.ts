/**
 * The options commands share, declared once: their types are inferred from these declarations (yargs'
 * InferredOptionTypes), so a handler's argument type can never drift from its parser.
 */
import type { ArgumentsCamelCase, CommandModule, InferredOptionTypes, Options } from 'yargs';
import { DEVICES, DTYPES } from '../model/engines/engine.js';
import { ENGINE_NAMES } from '../model/engines/index.js';

/**
 * What a command module gives: its options (with examples) and its handler. Its usage line and description
 * are in src/cli.ts, so that `vit --help` can list every command without loading their modules.
 */
export type CommandBody = Pick<CommandModule, 'builder' | 'handler'>;

/** Parsed arguments of an options declaration, camel-cased as yargs hands them over. */
export type ArgsOf<O extends Record<string, Options>> = ArgumentsCamelCase<InferredOptionTypes<O>>;

/** Options naming the model: every command that runs or describes one. */
export const MODEL_OPTIONS = {
  model: {
    alias: 'm', type: 'string',
    describe: 'preset (B/16, vit_base_patch16_224, ...), model directory (config.json + weights) or hub id ORG/NAME; default: the bundled digits ViT',
  },
  weights: { alias: 'w', type: 'string', describe: 'checkpoint file for the model' },
  'random-weights': { type: 'boolean', default: false, describe: 'run with seeded random weights (benchmarks, tests)' },
  'num-classes': { type: 'number', describe: 'override the number of classes' },
  'image-size': { type: 'string', describe: 'run at another resolution: S or HxW (position embeddings are resampled)' },
} as const satisfies Record<string, Options>;

/** Options of every command that runs a model over inputs; `formats` are the command's output formats. */
export function runOptions<F extends string>(formats: readonly [F, ...F[]]) {
  return {
    ...MODEL_OPTIONS,
    'batch-size': { alias: 'b', type: 'number', default: 8, describe: 'images per forward pass' },
    output: { alias: 'o', type: 'string', describe: 'write to FILE (a regular file is replaced atomically; - is stdout) instead of stdout' },
    format: { alias: 'f', type: 'string', choices: formats, default: formats[0], describe: 'output format' },
    null: { alias: '0', type: 'boolean', default: false, describe: 'stdin paths are NUL-separated (find -print0)' },
    engine: { type: 'string', choices: ENGINE_NAMES, default: 'auto', describe: 'onnx (onnxruntime-node), tfjs, or auto: onnx where it loads' },
    dtype: { type: 'string', choices: DTYPES, default: 'fp32', describe: 'fp32, or int8 (linear layers quantized; onnx engine)' },
    device: { type: 'string', choices: DEVICES, default: 'cpu', describe: 'cpu, or cuda (onnxruntime-node with its CUDA binaries)' },
    'reduce-range': {
      type: 'boolean', default: false,
      describe: 'with --dtype int8: weights in 7 bits on every CPU, as x86 CPUs without VNNI hold them, so that int8 outputs of mixed CPUs resume and merge together',
    },
    threads: { type: 'number', describe: 'threads for inference and decoding (default: VIT_THREADS, else the CPUs this process may use)' },
    resume: {
      type: 'boolean', default: false,
      describe: 'continue -o FILE: keep the complete rows it holds, skip those inputs, append the rest (written in place, synced per batch)',
    },
    shard: {
      type: 'string',
      describe: 'process shard K of N (K/N, from 1): inputs split by a hash of their path. Default: JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID (Slurm)',
    },
    'shard-count': { type: 'number', describe: 'the number of shards, with JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID (default: env VIT_SHARD_COUNT)' },
  } as const satisfies Record<string, Options>;
}

export type ModelArgs = ArgsOf<typeof MODEL_OPTIONS>;
