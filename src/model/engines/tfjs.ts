import type * as tfc from '@tensorflow/tfjs-core';
import { archOf, prefixOnlyRun } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import type { HostTensor, TensorMap } from '../tensor.js';
import type { Engine, EngineRequest, RunOptions, RunResult } from './engine.js';
import { collectGarbage } from './gc.js';
import { initTfjs, tf } from './tfjs-backend.js';
import { TfjsOps } from './tfjs-ops.js';

async function toHost(t: tfc.Tensor): Promise<HostTensor> {
  return { shape: t.shape.slice(), data: (await t.data()) as Float32Array };
}

/** Start the tfjs engine for a request: it always needs the weights. */
export async function startTfjs(req: EngineRequest): Promise<Engine> {
  const { config, weights } = await req.load();
  const engine = await TfjsEngine.create(config, weights, req.verbose);
  // The weights now live in tf tensors: let the host copies go before the first batch allocates.
  weights.clear();
  collectGarbage();
  return engine;
}

/** The model on TensorFlow.js, eagerly, with the weights held as tf tensors for the engine's lifetime. */
export class TfjsEngine implements Engine {
  readonly name = 'tfjs' as const;
  private readonly ops: TfjsOps;

  private constructor(readonly config: ModelConfig, readonly backend: string, private readonly params: Map<string, tfc.Tensor>) {
    this.ops = new TfjsOps(tf, (name) => {
      const p = this.params.get(name);
      if (!p) throw new Error(`tfjs engine: no parameter "${name}"`);
      return p;
    }, { scoped: true });
  }

  static async create(cfg: ModelConfig, weights: TensorMap, verbose: (m: string) => void = () => {}): Promise<TfjsEngine> {
    const backend = await initTfjs();
    verbose(`engine: tfjs, backend: ${backend}`);
    const params = new Map<string, tfc.Tensor>();
    for (const [name, t] of weights) params.set(name, tf.tensor(t.data, t.shape, 'float32'));
    const engine = new TfjsEngine(cfg, backend, params);
    for (const [name, p] of params) {
      if (p.rank === 2 && name.endsWith('.weight')) engine.ops.transposed.set(p, tf.transpose(p)); // [out, in] → [in, out]
    }
    return engine;
  }

  async run(pixels: Float32Array, batch: number, opts: RunOptions = {}): Promise<RunResult> {
    const cfg = this.config;
    const [h, w] = cfg.imgSize;
    // One flat list through tidy: [logits?, ...features, ...attentions]; everything else is freed.
    const prefixOnly = prefixOnlyRun(cfg, opts);
    const pools = archOf(cfg).pools.filter((p) => !prefixOnly || opts.pools!.includes(p));
    let hasHead = false;
    const outs = tf.tidy(() => {
      const x = tf.tensor4d(pixels.subarray(0, batch * cfg.inChans * h * w), [batch, cfg.inChans, h, w]);
      const o = archOf(cfg).forward(this.ops, cfg, x, { attentions: opts.attentions, prefixOnly });
      hasHead = o.logits !== null;
      return [...(o.logits ? [o.logits] : []), ...pools.map((p) => o.features[p]), ...o.attentions];
    });
    try {
      const host = await Promise.all(outs.map(toHost));
      const head = hasHead ? 1 : 0;
      return {
        logits: hasHead ? host[0] : null,
        features: Object.fromEntries(pools.map((p, i) => [p, host[head + i]])),
        attentions: host.slice(head + pools.length),
      };
    } finally {
      tf.dispose(outs);
    }
  }

  async dispose(): Promise<void> {
    for (const t of this.params.values()) {
      this.ops.transposed.get(t)?.dispose();
      t.dispose();
    }
    this.params.clear();
  }
}
