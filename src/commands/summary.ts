import { archOf } from '../model/arch/index.js';
import type { ModelConfig } from '../model/config.js';
import { summarize, type ModelSummary } from '../model/summary.js';
import { resolveModel } from '../io/model-source.js';
import { writeAll } from '../io/streams.js';
import type { Context } from '../pipeline/context.js';
import { modelSpec } from '../pipeline/open-model.js';
import { MODEL_OPTIONS, type ArgsOf, type CommandBody } from './options.js';

const OPTIONS = {
  ...MODEL_OPTIONS,
  json: { type: 'boolean', default: false, describe: 'print one JSON object instead of a table' },
} as const;

const int = (n: number) => n.toLocaleString('en-US');

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** A per-layer table, with consecutive identical blocks folded into one line. */
export function formatSummary(s: ModelSummary, cfg: ModelConfig): string {
  const rows: [string, string, string, string][] = [['layer', 'output', 'params', 'MACs']];
  for (const l of s.layers) rows.push([l.name, `[${l.outputShape.join(', ')}]`, int(l.params), int(l.macs)]);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  ');
  const out = [
    `${s.model}: ${s.imageSize[0]}×${s.imageSize[1]} input, ${archOf(cfg).describe(cfg)}, ` +
      (s.numClasses > 0 ? `${s.numClasses} classes` : 'no head'),
    '',
    line(rows[0]),
    ...rows.slice(1).map(line),
    '',
    `params:   ${int(s.params)}`,
    `MACs:     ${s.gmacs >= 0.1 ? `${s.gmacs.toFixed(2)} G` : `${(s.macs / 1e6).toFixed(2)} M`} per image`,
    `weights:  ${bytes(s.weightBytes)} (float32)`,
  ];
  return out.join('\n') + '\n';
}

export function summaryCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y.positional('model', { type: 'string', describe: 'preset or model directory (same as --model)' }).options(OPTIONS)
      .example('$0 summary B/16', 'ViT-B/16 at 224 with 1000 classes')
      .example('$0 summary vit_large_patch16_384 --json', 'machine-readable')
      .example('$0 summary B/16 --image-size 384 --num-classes 10', 'another resolution and head'),
    handler: async (argv) => {
      const a = argv as unknown as ArgsOf<typeof OPTIONS>;
      // Only the config is read: --weights and --random-weights change nothing here.
      const { config } = await resolveModel({ ...modelSpec(a), weights: undefined, randomWeights: false });
      const s = summarize(config);
      await writeAll(ctx.stdout, a.json ? JSON.stringify(s, null, 2) + '\n' : formatSummary(s, config));
    },
  };
}
