/**
 * The architecture record: everything the rest of the tool needs to know about one architecture, so that
 * adding one is a folder under src/model/arch/ plus a row in the table of src/model/arch/index.ts (the role
 * timm's `register_model` and transformers.js's model registry play there).
 */
import type { ModelConfig } from '../config.js';
import type { Json } from '../config-json.js';
import type { Ops } from '../ops.js';
import type { TensorMap } from '../tensor.js';

/** Presets by name: the canonical (timm) names, the short ones for help texts, and a lookup by any name. */
export interface PresetTable<C> {
  names(): string[];
  shortNames(): string[];
  /** The config of a preset by any of its names (case-insensitive), or null. */
  lookup(name: string): C | null;
}

/** What one forward pass yields; engines keep the parts a command asks for. */
export interface ModelOutputs<T> {
  /** [B, numClasses] raw head outputs; null without a head. */
  logits: T | null;
  /** [B, width] pooled features by pool name (the architecture's `pools`). */
  features: Record<string, T>;
  /** Per attention layer, the softmax probabilities (only when asked for); layout per `attention`. */
  attentions: T[];
}

export interface ForwardOptions {
  attentions?: boolean;
  /**
   * Only the logits and the features that read the prefix (class, distillation) tokens alone, where the
   * architecture can then skip work (ViT with token pooling: the last block for those tokens only); features
   * that need every token (avg) are then absent. Ignored with attentions, and where nothing can be skipped.
   */
  prefixOnly?: boolean;
}

/**
 * A checkpoint naming scheme: maps a checkpoint's own tensor names (and layouts) to the canonical ones.
 * Detection looks only at the keys.
 */
export interface Scheme<C> {
  name: string;
  detect(keys: string[]): boolean;
  toCanonical(src: TensorMap, cfg: C): TensorMap;
}

/**
 * How attention probabilities are laid out, which decides the analyses that apply: rollout and distance are
 * defined for global attention over a patch grid; windowed attention only has its raw probabilities.
 */
export interface AttentionLayout<C> {
  /** Attention layers (one per block), and the heads of layer i. */
  layers(cfg: C): number;
  heads(cfg: C, layer: number): number;
  /** The tensors `vit attention --raw` returns, in words (README, help). */
  layout: string;
  /** Global attention over a patch grid, with its geometry; null for windowed attention. */
  global: { prefixTokens(cfg: C): number; grid(cfg: C): [number, number]; patchSize(cfg: C): number } | null;
  /**
   * Windowed attention (layer tensors [B, windows, heads, N, N]): layer i's windows per image and tokens per
   * window. Absent for global attention ([B, heads, T, T]).
   */
  windows?(cfg: C, layer: number): { count: number; tokens: number };
}

export interface Architecture<C extends ModelConfig = ModelConfig> {
  /** The value of ModelConfig.arch. */
  name: string;
  /** For messages: "ViT / DeiT". */
  title: string;
  /** Hugging Face `model_type` values and timm `architecture` prefixes this record reads. */
  hfModelTypes: readonly string[];
  timmPrefixes: readonly string[];
  presets: PresetTable<C>;
  fromHf(cfg: Json, preprocessor: Json | null, name: string): C;
  fromTimm(cfg: Json, name: string): C;
  /** Refuse a config the architecture cannot express; one error naming every bad field. */
  validate(cfg: C): C;
  /** Run at another input size (position information resampled on load where the architecture has any). */
  withImageSize(cfg: C, size: [number, number]): C;
  /** Canonical parameter names and shapes: drives the weight check, random weights and parameter counts. */
  params(cfg: C): Map<string, number[]>;
  schemes: readonly Scheme<C>[];
  /**
   * The config made to fit what a checkpoint holds (a preset says nothing of a fine-tuned head): called on
   * canonical weights before they are checked, with the name of the scheme they came in (Swin windows as the
   * implementation that wrote them does).
   */
  fitCheckpoint(cfg: C, weights: TensorMap, opts: { fromPreset: boolean; fixedClasses: boolean; scheme?: string }): C;
  /** Adapt checked weights to the config (e.g. position embeddings resampled to another image size). */
  prepareWeights(cfg: C, weights: TensorMap): void;
  forward<T>(ops: Ops<T>, cfg: C, images: T, opts?: ForwardOptions): ModelOutputs<T>;
  /** The feature names `forward` returns, the default (what `vit embed` gives) first. */
  pools: readonly string[];
  /**
   * The features a forward with `prefixOnly` still returns (logits as ever), where that skips work for this
   * config; null where it would skip nothing.
   */
  prefixPools(cfg: C): readonly string[] | null;
  attention: AttentionLayout<C>;
  /** The summary row a parameter belongs to (e.g. blocks.3.mlp.fc1.weight → blocks.3). */
  layerOf(param: string): string;
  /** The architecture's own fields for `vit summary` (JSON keys) and its one-line description. */
  summaryFields(cfg: C): Record<string, unknown>;
  describe(cfg: C): string;
  /**
   * The Hugging Face `config.json` of an image classifier of this architecture (`vit export`), with the
   * config's labels: what loaders of the exported folder read (model type, labels, sizes).
   */
  hfConfig(cfg: C): Json;
}
