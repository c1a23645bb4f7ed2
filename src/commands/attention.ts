import { mkdirSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { HeatmapNames, overlay } from '../io/heatmap.js';
import { decodeRgb } from '../io/images.js';
import { writeAll } from '../io/streams.js';
import type { ErrorRow, RowSchema, RowWriter } from '../io/writers.js';
import { attentionDistance, layerHeads, rollout } from '../model/attention.js';
import { numPrefixTokens, patchGrid, type ViTConfig } from '../model/config.js';
import type { HostTensor } from '../model/tensor.js';
import type { CommandBody, Context } from './common.js';
import { batchOptions, runCommand, type Args } from './run.js';

interface RolloutRow { path: string; grid: [number, number]; rollout: Float32Array }
interface RawRow { path: string; layers: { layer: number; heads: number[][][] }[] }
interface DistanceRow { path: string; distance: number[][] }

const ROLLOUT_SCHEMA: RowSchema<RolloutRow> = {
  kind: 'attention rollout',
  csvColumns: (first) => ['gh', 'gw', ...Array.from({ length: first?.rollout.length ?? 0 }, (_, i) => `v${i}`)],
  csvRecords: (r) => [[r.grid[0], r.grid[1], ...r.rollout]],
  json: (r) => ({ path: r.path, grid: r.grid, rollout: r.rollout }),
  npy: (r) => r.rollout,
  npyShape: (first) => first.grid,
};

const RAW_SCHEMA: RowSchema<RawRow> = {
  kind: 'raw attention',
  csvColumns: (first) => {
    const T = first?.layers[0]?.heads[0]?.length ?? 0;
    return ['layer', 'head', 'query', ...Array.from({ length: T }, (_, i) => `k${i}`)];
  },
  csvRecords: (r) => r.layers.flatMap((l) => l.heads.flatMap((h, hi) => h.map((row, q) => [l.layer, hi, q, ...row]))),
  json: (r) => ({ path: r.path, layers: r.layers }),
  npy: (r) => Float32Array.from(r.layers.flatMap((l) => l.heads.flat(2))),
  npyShape: (first) => {
    const T = first.layers[0].heads[0].length;
    return [first.layers.length, first.layers[0].heads.length, T, T];
  },
};

const DISTANCE_SCHEMA: RowSchema<DistanceRow> = {
  kind: 'attention distance',
  csvColumns: (first) => ['layer', ...Array.from({ length: first?.distance[0]?.length ?? 0 }, (_, i) => `h${i}`)],
  csvRecords: (r) => r.distance.map((heads, l) => [l, ...heads]),
  json: (r) => ({ path: r.path, distance: r.distance }),
  npy: (r) => Float32Array.from(r.distance.flat()),
  npyShape: (first) => [first.distance.length, first.distance[0].length],
};

/** Which layers and heads of the raw probabilities to keep. */
function selectRaw(attn: HostTensor[], b: number, layer: number | 'all', head: number | 'mean' | 'all'): RawRow['layers'] {
  const layers = layer === 'all' ? attn.map((_, i) => i) : [layer];
  return layers.map((l) => {
    const heads = layerHeads(attn[l], b);
    if (head === 'all') return { layer: l, heads };
    if (head !== 'mean') return { layer: l, heads: [heads[head]] };
    const T = heads[0].length;
    const mean = Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => heads.reduce((s, h) => s + h[i][j], 0) / heads.length));
    return { layer: l, heads: [mean] };
  });
}

/** `--layer` / `--head` values: a 0-based index or one of the words. */
function indexOrWord<W extends string>(v: unknown, words: readonly W[], flag: string, count: number): number | W {
  const s = String(v);
  if ((words as readonly string[]).includes(s)) return s as W;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n >= count) {
    throw new UsageError(`${flag} takes ${words.join(', ')} or an index from 0 to ${count - 1}, not "${s}"`);
  }
  return n;
}

/** Mean distance per layer and head over all images, printed as a table (or JSON) when the run ends. */
class DistanceSummary implements RowWriter<DistanceRow> {
  readonly closedByReader = false;
  private sum: number[][] | null = null;
  private n = 0;
  constructor(private readonly ctx: Context, private readonly json: boolean) {}

  async write(row: DistanceRow | ErrorRow): Promise<void> {
    if ('error' in row) return;
    this.sum ??= row.distance.map((h) => h.map(() => 0));
    row.distance.forEach((h, l) => h.forEach((d, i) => (this.sum![l][i] += d)));
    this.n++;
  }

  async close(): Promise<void> {
    const mean = (this.sum ?? []).map((h) => h.map((d) => d / this.n));
    if (this.json) {
      await writeAll(this.ctx.stdout, JSON.stringify({ images: this.n, distance: mean, layerMean: mean.map(avg) }) + '\n');
      return;
    }
    const H = mean[0]?.length ?? 0;
    const head = ['layer', 'mean', ...Array.from({ length: H }, (_, i) => `h${i}`)];
    const rows = mean.map((h, l) => [String(l), avg(h).toFixed(1), ...h.map((d) => d.toFixed(1))]);
    const w = head.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
    const fmt = (r: string[]) => r.map((c, i) => c.padStart(w[i])).join('  ');
    const text = [`mean attention distance in pixels over ${this.n} image${this.n === 1 ? "" : "s"}`, fmt(head), ...rows.map(fmt)].join('\n');
    await writeAll(this.ctx.stdout, text + '\n');
  }

  async abort(): Promise<void> {}
}

const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / (v.length || 1);

interface AttentionArgs extends Args {
  raw: boolean;
  layer: string;
  head: string;
  distance: boolean;
  summary: boolean;
  json: boolean;
  heatmap?: string;
}

export function attentionCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => batchOptions(y, ['jsonl', 'json', 'csv', 'npy'])
      .option('raw', { type: 'boolean', default: false, describe: 'the softmax attention probabilities [layers][heads][tokens][tokens] (tokens include the class token)' })
      .option('layer', { type: 'string', default: 'all', describe: 'with --raw: a 0-based layer index, or all' })
      .option('head', { type: 'string', default: 'all', describe: 'with --raw: a 0-based head index, mean, or all' })
      .option('distance', { type: 'boolean', default: false, describe: 'mean attention distance per layer and head, in input pixels (the paper\'s figure 7)' })
      .option('summary', { type: 'boolean', default: false, describe: 'with --distance: average over all images and print a per-layer table' })
      .option('json', { type: 'boolean', default: false, describe: 'with --summary: print JSON instead of a table' })
      .option('heatmap', { type: 'string', describe: 'also write DIR/<name>.attention.png: the rollout over each image' })
      .example('$0 attention img.jpg --heatmap out/', 'rollout rows on stdout, overlay PNGs in out/')
      .example('$0 attention photos/ --distance --summary', 'attention distance per layer, averaged over the folder')
      .example('$0 attention img.jpg --raw --layer 11 --head mean -f json', 'the last layer\'s head-averaged attention')
      .epilogue(
        'Rollout (Abnar & Zuidema 2020): for each layer l, A_l = mean over heads of the attention probabilities + I, ' +
        'rows renormalised to sum to 1; R = A_L · … · A_1; the output is R[0, prefix:] (class token → patches) on the ' +
        'patch grid, unnormalised. Distance: for patch queries i and keys j, Σ_j P[i,j]·|c_i − c_j| in input pixels, ' +
        'averaged over queries; class/distillation tokens left out, weights not renormalised. Layers and heads count from 0.',
      ),
    handler: async (argv) => {
      const a = argv as unknown as AttentionArgs;
      if (a.raw && a.distance) throw new UsageError('--raw and --distance are separate outputs: pick one');
      if (a.summary && !a.distance) throw new UsageError('--summary goes with --distance');
      if ((a.layer !== 'all' || a.head !== 'all') && !a.raw) throw new UsageError('--layer and --head go with --raw');
      let cfg: ViTConfig;
      let layer: number | 'all' = 'all';
      let head: number | 'mean' | 'all' = 'all';
      const names = a.heatmap ? new HeatmapNames(a.heatmap) : null;
      if (a.heatmap) mkdirSync(a.heatmap, { recursive: true });
      const heatmap = async (path: string, values: Float32Array | Float64Array) => {
        const [gh, gw] = patchGrid(cfg);
        const png = await overlay(await decodeRgb(path), values, gh, gw, cfg.preprocess);
        writeFileSync(names!.next(path), png);
      };
      const base = {
        runOptions: { attentions: true },
        check: (m: { config: ViTConfig }) => {
          cfg = m.config;
          if (a.raw) {
            layer = indexOrWord(a.layer, ['all'] as const, '--layer', cfg.depth);
            head = indexOrWord(a.head, ['mean', 'all'] as const, '--head', cfg.numHeads);
          }
        },
      };
      const withHeatmap = async <R>(o: { path: string; result: { attentions: HostTensor[] }; row: number }, make: () => R): Promise<R> => {
        if (names) await heatmap(o.path, rollout(o.result.attentions, o.row, numPrefixTokens(cfg)));
        return make();
      };
      if (a.raw) {
        await runCommand<RawRow>(a, ctx, {
          ...base, schema: RAW_SCHEMA,
          row: (o) => withHeatmap(o, () => ({ path: o.path, layers: selectRaw(o.result.attentions, o.row, layer, head) })),
        });
      } else if (a.distance) {
        await runCommand<DistanceRow>(a, ctx, {
          ...base, schema: DISTANCE_SCHEMA,
          writer: a.summary ? () => new DistanceSummary(ctx, a.json) : undefined,
          row: (o) => withHeatmap(o, () => ({
            path: o.path,
            distance: attentionDistance(o.result.attentions, o.row, patchGrid(cfg), cfg.patchSize, numPrefixTokens(cfg)),
          })),
        });
      } else {
        await runCommand<RolloutRow>(a, ctx, {
          ...base, schema: ROLLOUT_SCHEMA,
          row: async (o) => {
            const r = Float32Array.from(rollout(o.result.attentions, o.row, numPrefixTokens(cfg)));
            if (names) await heatmap(o.path, r);
            return { path: o.path, grid: patchGrid(cfg), rollout: r };
          },
        });
      }
    },
  };
}
