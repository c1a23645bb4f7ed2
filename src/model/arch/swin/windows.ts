import type { SwinConfig, WindowRule } from './config.js';

type Pair = [number, number];

/** How one block partitions its map into windows. */
export interface BlockWindows {
  stage: number;
  /** Index of the block within its stage; odd blocks are the shifted ones (SW-MSA). */
  block: number;
  /** [H, W] of the map the block sees. */
  map: Pair;
  window: Pair;
  /** Cyclic shift per axis (0: plain W-MSA along that axis). */
  shift: Pair;
  /** [Hp, Wp]: the map zero-padded at the bottom and right to whole windows. */
  padded: Pair;
  /** torchvision and HF pad before the cyclic shift, timm after it. */
  padFirst: boolean;
  /** Windows per image, (Hp/wh)·(Wp/ww), in row-major order over the padded map. */
  numWindows: number;
  /** Tokens per window, wh·ww. */
  tokens: number;
}

interface Rule {
  padFirst: boolean;
  /**
   * The window and shift of a block whose target window side is `w`, on a map of `map` (its actual size) that
   * the implementation believes is `nominal` (timm sizes a stage by halving with floor at build time, while an
   * odd map really merges to the ceiling).
   */
  fit(w: number, map: Pair, nominal: Pair, shifted: boolean): { window: Pair; shift: Pair };
}

const half = (w: number, shifted: boolean) => (shifted ? Math.floor(w / 2) : 0);

/**
 * The three implementations' rules (timm swin_transformer.py `_calc_window_shift` and `_attn`; transformers
 * modeling_swin.py `set_shift_and_window_size`, `maybe_pad`; torchvision swin_transformer.py
 * `shifted_window_attention`).
 */
const RULES: Record<WindowRule, Rule> = {
  // Per axis: a map no larger than the window becomes the window, unshifted.
  timm: {
    padFirst: false,
    fit: (w, _map, nominal, shifted) => ({
      window: [Math.min(nominal[0], w), Math.min(nominal[1], w)],
      shift: [nominal[0] <= w ? 0 : half(w, shifted), nominal[1] <= w ? 0 : half(w, shifted)],
    }),
  },
  // Both axes at once: when the smaller side is no larger than the window, a square window of that side, unshifted.
  hf: {
    padFirst: true,
    fit: (w, map, _nominal, shifted) => {
      const m = Math.min(map[0], map[1]);
      return m <= w ? { window: [m, m], shift: [0, 0] } : { window: [w, w], shift: [half(w, shifted), half(w, shifted)] };
    },
  },
  // The window never shrinks: a small map is padded up to it; an axis covered by one window is not shifted.
  torchvision: {
    padFirst: true,
    fit: (w, map, _nominal, shifted) => {
      const padded = map.map((m) => Math.ceil(m / w) * w);
      return { window: [w, w], shift: [w >= padded[0] ? 0 : half(w, shifted), w >= padded[1] ? 0 : half(w, shifted)] };
    },
  },
};

/** [H, W] of each stage's map: the patch grid, then halved with the odd row or column padded (patch merging). */
export function stageMaps(cfg: SwinConfig): Pair[] {
  const maps: Pair[] = [[Math.floor(cfg.imgSize[0] / cfg.patchSize), Math.floor(cfg.imgSize[1] / cfg.patchSize)]];
  for (let i = 1; i < cfg.depths.length; i++) {
    const [h, w] = maps[i - 1];
    maps.push([Math.ceil(h / 2), Math.ceil(w / 2)]);
  }
  return maps;
}

/** Every block's windows, stage by stage. */
export function blockWindows(cfg: SwinConfig): BlockWindows[] {
  const rule = RULES[cfg.windowRule];
  const maps = stageMaps(cfg);
  const grid = maps[0];
  const out: BlockWindows[] = [];
  cfg.depths.forEach((depth, stage) => {
    const map = maps[stage];
    const nominal: Pair = [Math.floor(grid[0] / 2 ** stage), Math.floor(grid[1] / 2 ** stage)];
    for (let block = 0; block < depth; block++) {
      const { window, shift } = rule.fit(cfg.windowSize[stage], map, nominal, block % 2 === 1);
      const padded: Pair = [Math.ceil(map[0] / window[0]) * window[0], Math.ceil(map[1] / window[1]) * window[1]];
      out.push({
        stage, block, map, window, shift, padded, padFirst: rule.padFirst,
        numWindows: (padded[0] / window[0]) * (padded[1] / window[1]), tokens: window[0] * window[1],
      });
    }
  });
  return out;
}

/** Rows of the relative position bias table for a window [wh, ww]: (2·wh − 1)·(2·ww − 1). */
export function biasTableRows(window: Pair): number {
  return (2 * window[0] - 1) * (2 * window[1] - 1);
}

/**
 * For every (query, key) pair of tokens in a window, flattened row-major [N·N], the row of the bias table
 * holding their offset: (Δy + wh − 1)·(2·ww − 1) + (Δx + ww − 1), Δ = query − key. This is the buffer every
 * implementation derives and some checkpoints store as `relative_position_index`.
 */
export function relativePositionIndex(window: Pair): Int32Array {
  return memo(`${window[0]}x${window[1]}`, indexCache, () => computeIndex(window));
}

/**
 * Windows and masks are the same for every block of a geometry and every run, and the ONNX graph stores one
 * copy per array it is handed; so each is computed once and shared (callers never modify them).
 */
const indexCache = new Map<string, Int32Array>();
const maskCache = new Map<string, Float32Array>();
function memo<A>(key: string, cache: Map<string, A>, make: () => A): A {
  let v = cache.get(key);
  if (v === undefined) {
    v = make();
    cache.set(key, v);
  }
  return v;
}

function computeIndex(window: Pair): Int32Array {
  const [wh, ww] = window;
  const n = wh * ww;
  const index = new Int32Array(n * n);
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      const dy = Math.floor(a / ww) - Math.floor(b / ww);
      const dx = (a % ww) - (b % ww);
      index[a * n + b] = (dy + wh - 1) * (2 * ww - 1) + (dx + ww - 1);
    }
  }
  return index;
}

/** Which of the (up to) three bands along one padded axis a position falls in; one band when unshifted. */
function band(pos: number, size: number, window: number, shift: number): number {
  if (shift === 0) return 0;
  return pos < size - window ? 0 : pos < size - shift ? 1 : 2;
}

/** The value all three add to the scores of token pairs from different bands (not −∞, so it is exactly theirs). */
export const MASKED = -100;

/**
 * The SW-MSA mask [nW, N, N] of a shifted block: 0 where query and key lie in the same band of the padded map
 * in both axes, MASKED where the cyclic shift brought them together from different bands. The bands are laid
 * over the padded map by every implementation, whichever order it pads and shifts in.
 */
export function shiftMask(w: BlockWindows): Float32Array {
  return memo(`${w.padded.join('x')}/${w.window.join('x')}/${w.shift.join('x')}`, maskCache, () => computeMask(w));
}

function computeMask(w: BlockWindows): Float32Array {
  const [hp, wp] = w.padded;
  const [wh, ww] = w.window;
  const n = w.tokens;
  const cols = wp / ww;
  const mask = new Float32Array(w.numWindows * n * n);
  const region = new Int32Array(n);
  for (let win = 0; win < w.numWindows; win++) {
    const y0 = Math.floor(win / cols) * wh;
    const x0 = (win % cols) * ww;
    for (let t = 0; t < n; t++) {
      const y = y0 + Math.floor(t / ww);
      const x = x0 + (t % ww);
      region[t] = 3 * band(y, hp, wh, w.shift[0]) + band(x, wp, ww, w.shift[1]);
    }
    const base = win * n * n;
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) mask[base + a * n + b] = region[a] === region[b] ? 0 : MASKED;
  }
  return mask;
}
