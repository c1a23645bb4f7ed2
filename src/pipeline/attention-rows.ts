/**
 * The rows of `vit attention`: rollout (default), raw probabilities, mean distance (per image, or a summary
 * over all images), and heatmap overlays beside any of them.
 */
import { UsageError } from '../errors.js';
import { overlay, planHeatmaps, writeHeatmap } from '../io/heatmap.js';
import { decodeRgb } from '../io/images.js';
import { writeAll } from '../io/streams.js';
import type { ErrorRow, RowSchema, RowWriter } from '../io/sinks/rows.js';
import { archOf } from '../model/arch/index.js';
import { attentionDistance, layerHeads, rollout } from '../model/attention.js';
import type { ModelConfig } from '../model/config.js';
import type { HostTensor } from '../model/tensor.js';
import type { Context } from './context.js';
import type { RowKind } from './run.js';

interface RolloutRow { path: string; grid: [number, number]; rollout: Float32Array }
/**
 * One layer of raw probabilities: heads × T × T for global attention, windows × heads × N × N for windowed
 * attention (Swin), with the heads chosen by --head.
 */
type RawLayer = { layer: number; heads: number[][][] } | { layer: number; windows: number[][][][] };
interface RawRow { path: string; layers: RawLayer[] }

/** A layer's (window, head) matrices in output order, each N × N (one window for global attention). */
function matrices(l: RawLayer): { window: number | null; head: number; m: number[][] }[] {
  const windows = 'windows' in l ? l.windows.map((heads, w) => ({ w: w as number | null, heads })) : [{ w: null, heads: l.heads }];
  return windows.flatMap(({ w, heads }) => heads.map((m, head) => ({ window: w, head, m })));
}

const windowed = (r: RawRow | null | undefined) => !!r && r.layers.length > 0 && 'windows' in r.layers[0];
interface DistanceRow { path: string; distance: number[][] }

const ROLLOUT_SCHEMA: RowSchema<RolloutRow> = {
  kind: 'attention rollout',
  csvColumns: (first) => ['gh', 'gw', ...Array.from({ length: first?.rollout.length ?? 0 }, (_, i) => `v${i}`)],
  csvRecords: (r) => [[r.grid[0], r.grid[1], ...r.rollout]],
  json: (r) => ({ path: r.path, grid: r.grid, rollout: r.rollout }),
  npy: (r) => r.rollout,
  npyShape: (first) => first.grid,
  columns: [
    { name: 'grid', type: { list: 'int32' }, value: (r) => r.grid },
    { name: 'rollout', type: { list: 'float' }, value: (r) => r.rollout },
  ],
};

const RAW_SCHEMA: RowSchema<RawRow> = {
  kind: 'raw attention',
  csvColumns: (first) => {
    const T = first && first.layers.length ? matrices(first.layers[0])[0].m.length : 0;
    return ['layer', ...(windowed(first) ? ['window'] : []), 'head', 'query', ...Array.from({ length: T }, (_, i) => `k${i}`)];
  },
  csvRecords: (r) => r.layers.flatMap((l) => matrices(l).flatMap(({ window, head, m }) =>
    m.map((row, q) => [l.layer, ...(window === null ? [] : [window]), head, q, ...row]))),
  json: (r) => ({ path: r.path, layers: r.layers }),
  npy: (r) => Float32Array.from(r.layers.flatMap((l) => matrices(l).flatMap(({ m }) => m.flat()))),
  npyShape: (first) => {
    const l = first.layers[0];
    const T = matrices(l)[0].m.length;
    return 'windows' in l ? [first.layers.length, l.windows.length, l.windows[0].length, T, T] : [first.layers.length, l.heads.length, T, T];
  },
};

const DISTANCE_SCHEMA: RowSchema<DistanceRow> = {
  kind: 'attention distance',
  csvColumns: (first) => ['layer', ...Array.from({ length: first?.distance[0]?.length ?? 0 }, (_, i) => `h${i}`)],
  csvRecords: (r) => r.distance.map((heads, l) => [l, ...heads]),
  json: (r) => ({ path: r.path, distance: r.distance }),
  npy: (r) => Float32Array.from(r.distance.flat()),
  npyShape: (first) => [first.distance.length, first.distance[0].length],
  columns: [{ name: 'distance', type: { list: { list: 'float' } }, value: (r) => r.distance }],
};

/** The heads --head keeps: all, one, or their mean. */
function pickHeads(heads: number[][][], head: number | 'mean' | 'all'): number[][][] {
  if (head === 'all') return heads;
  if (head !== 'mean') return [heads[head]];
  const T = heads[0].length;
  return [Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => heads.reduce((s, h) => s + h[i][j], 0) / heads.length))];
}

/** Which layers and heads of the raw probabilities to keep. */
function selectRaw(attn: HostTensor[], b: number, layer: number | 'all', head: number | 'mean' | 'all'): RawRow['layers'] {
  const layers = layer === 'all' ? attn.map((_, i) => i) : [layer];
  return layers.map((l): RawLayer => {
    const a = attn[l];
    if (a.shape.length === 4) return { layer: l, heads: pickHeads(layerHeads(a, b), head) };
    // [B, nW, H, N, N] read as [B·nW, H, N, N]: window w of image b is entry b·nW + w.
    const [B, nW, H, N] = a.shape;
    const flat = { shape: [B * nW, H, N, N], data: a.data };
    return { layer: l, windows: Array.from({ length: nW }, (_, w) => pickHeads(layerHeads(flat, b * nW + w), head)) };
  });
}

/** `--layer` / `--head` values: a 0-based index or one of the words. */
function indexOrWord<W extends string>(v: string, words: readonly W[], flag: string, count: number): number | W {
  if ((words as readonly string[]).includes(v)) return v as W;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= count) {
    throw new UsageError(`${flag} takes ${words.join(', ')} or an index from 0 to ${count - 1}, not "${v}"`);
  }
  return n;
}

const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / (v.length || 1);

/** Mean distance per layer and head over all images, printed as a table (or JSON) when the run ends. */
class DistanceSummary implements RowWriter<DistanceRow> {
  readonly closedByReader = false;
  private sum: number[][] | null = null;
  private n = 0;
  constructor(private readonly out: NodeJS.WritableStream, private readonly json: boolean) {}

  async write(row: DistanceRow | ErrorRow): Promise<void> {
    if ('error' in row) return;
    this.sum ??= row.distance.map((h) => h.map(() => 0));
    row.distance.forEach((h, l) => h.forEach((d, i) => (this.sum![l][i] += d)));
    this.n++;
  }

  async close(): Promise<void> {
    const mean = (this.sum ?? []).map((h) => h.map((d) => d / this.n));
    if (this.json) {
      await writeAll(this.out, JSON.stringify({ images: this.n, distance: mean, layerMean: mean.map(avg) }) + '\n');
      return;
    }
    const H = mean[0]?.length ?? 0;
    const head = ['layer', 'mean', ...Array.from({ length: H }, (_, i) => `h${i}`)];
    const rows = mean.map((h, l) => [String(l), avg(h).toFixed(1), ...h.map((d) => d.toFixed(1))]);
    const w = head.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
    const fmt = (r: string[]) => r.map((c, i) => c.padStart(w[i])).join('  ');
    const text = [`mean attention distance in pixels over ${this.n} image${this.n === 1 ? '' : 's'}`, fmt(head), ...rows.map(fmt)].join('\n');
    await writeAll(this.out, text + '\n');
  }

  async abort(): Promise<void> {}
}

export interface AttentionOptions {
  raw: boolean;
  layer: string;
  head: string;
  distance: boolean;
  summary: boolean;
  json: boolean;
  heatmap?: string;
  /** The output format (-f): npy needs one shape for every layer it holds. */
  format?: string;
}

type Maker<R> = (r: { attentions: HostTensor[] }, b: number, path: string) => R;

/** The row kind of an attention run: the analysis asked for, heatmaps written beside its rows. */
export function attentionRows(o: AttentionOptions, ctx: Context): RowKind<RolloutRow> | RowKind<RawRow> | RowKind<DistanceRow> {
  if (o.raw && o.distance) throw new UsageError('--raw and --distance are separate outputs: pick one');
  if (o.summary && !o.distance) throw new UsageError('--summary goes with --distance');
  if ((o.layer !== 'all' || o.head !== 'all') && !o.raw) throw new UsageError('--layer and --head go with --raw');
  let heatmaps: Map<string, string> | null = null;
  const plan = (inputs: readonly string[], outputs: readonly string[]) => {
    if (o.heatmap !== undefined) heatmaps = planHeatmaps(o.heatmap, inputs, outputs);
  };
  const heatmap = async (config: ModelConfig, path: string, values: ArrayLike<number>, grid: [number, number]) => {
    if (heatmaps) writeHeatmap(heatmaps.get(path)!, await overlay(await decodeRgb(path), values, grid[0], grid[1], config.preprocess));
  };

  /** The analyses need global attention over a patch grid; returns its geometry. */
  const geometry = (config: ModelConfig, what: string) => {
    const { global, layout } = archOf(config).attention;
    if (global === null) {
      throw new UsageError(`${what} is defined for global attention; ${archOf(config).title} attends within windows (${layout}): use --raw`);
    }
    return { prefix: global.prefixTokens(config), grid: global.grid(config), patch: global.patchSize(config) };
  };
  const withHeatmaps = <R>(config: ModelConfig, make: Maker<R>) => {
    if (o.heatmap === undefined) return make;
    const g = geometry(config, '--heatmap');
    return async (r: { attentions: HostTensor[] }, b: number, path: string) => {
      await heatmap(config, path, rollout(r.attentions, b, g.prefix), g.grid);
      return make(r, b, path);
    };
  };
  const runOptions = () => ({ attentions: true });
  const command = 'attention';
  const rereads = o.heatmap === undefined ? undefined : '--heatmap';
  if (o.raw) {
    return {
      command, schema: RAW_SCHEMA, runOptions, plan, rereads,
      options: () => ({ analysis: 'raw', layer: o.layer, head: o.head }),
      prepare(config) {
        const a = archOf(config).attention;
        const depth = a.layers(config);
        const layer = indexOrWord(o.layer, ['all'] as const, '--layer', depth);
        const layers = layer === 'all' ? Array.from({ length: depth }, (_, i) => i) : [layer];
        const head = indexOrWord(o.head, ['mean', 'all'] as const, '--head', Math.min(...layers.map((l) => a.heads(config, l))));
        if (a.windows && o.format === 'npy') {
          const shape = (l: number) => `${a.windows!(config, l).count}x${head === 'all' ? a.heads(config, l) : 1}x${a.windows!(config, l).tokens}`;
          const shapes = [...new Set(layers.map(shape))];
          if (shapes.length > 1) {
            throw new UsageError(`-f npy holds one shape, and these ${archOf(config).title} layers' windows × heads × tokens differ ` +
              `(${shapes.join(', ')}): pick layers of one stage with --layer, or use jsonl`);
          }
        }
        return withHeatmaps(config, (r, b, path) => ({ path, layers: selectRaw(r.attentions, b, layer, head) }));
      },
    };
  }
  if (o.distance) {
    return {
      command, schema: DISTANCE_SCHEMA, runOptions, plan, rereads,
      options: () => ({ analysis: 'distance' }),
      writer: o.summary ? () => new DistanceSummary(ctx.stdout, o.json) : undefined,
      prepare(config) {
        const g = geometry(config, '--distance');
        return withHeatmaps(config, (r, b, path) => ({ path, distance: attentionDistance(r.attentions, b, g.grid, g.patch, g.prefix) }));
      },
    };
  }
  return {
    command, schema: ROLLOUT_SCHEMA, runOptions, plan, rereads,
    options: () => ({ analysis: 'rollout' }),
    prepare(config) {
      const g = geometry(config, 'rollout');
      return async (r, b, path) => {
        const values = Float32Array.from(rollout(r.attentions, b, g.prefix));
        await heatmap(config, path, values, g.grid);
        return { path, grid: g.grid, rollout: values };
      };
    },
  };
}
