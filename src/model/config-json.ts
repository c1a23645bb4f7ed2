/**
 * Reading the two config.json dialects people's model directories hold — Hugging Face's (`model_type`) and
 * timm's (`architecture` + `model_args` + `pretrained_cfg`) — into an architecture's config. Which
 * architecture reads a file is a row of the architecture table (src/model/arch/index.ts); the helpers here
 * are the field readers every architecture's reader shares.
 */
import { ModelError } from '../errors.js';

export type Json = Record<string, unknown>;

export function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelError(`config: ${what} must be a number, found ${JSON.stringify(v)}`);
  return v;
}

export function pair(v: unknown, what: string): [number, number] {
  if (Array.isArray(v) && v.length === 2) return [num(v[0], what), num(v[1], what)];
  const n = num(v, what);
  return [n, n];
}

/** A number or a list of numbers (mean, std). */
export function numbers(v: unknown, what: string): number[] {
  if (typeof v === 'number') return [num(v, what)];
  if (!Array.isArray(v) || v.length === 0) throw new ModelError(`config: ${what} must be a number or a list of numbers, found ${JSON.stringify(v)}`);
  return v.map((x) => num(x, what));
}

/** id2label {"0": "a", "1": "b"} → ["a", "b"], checking that the indices are exactly 0..n-1. */
export function labelsFromId2label(id2label: unknown): string[] | null {
  if (!id2label || typeof id2label !== 'object') return null;
  const entries = Object.entries(id2label as Record<string, unknown>);
  const labels: string[] = new Array(entries.length);
  for (const [k, v] of entries) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i >= entries.length) throw new ModelError(`config: id2label has a bad index "${k}"`);
    labels[i] = String(v);
  }
  return labels;
}

/**
 * A timm hub `config.json`'s pretrained_cfg and label names as timm reads them (timm/models/_hub.py): the old
 * layout has no pretrained_cfg, the whole file being one (with `labels` for label_names).
 */
export function timmHubCfg(cfg: Json): { pre: Json; labelNames: unknown } {
  if (cfg.pretrained_cfg !== undefined && cfg.pretrained_cfg !== null) return { pre: cfg.pretrained_cfg as Json, labelNames: cfg.label_names };
  return { pre: cfg, labelNames: cfg.label_names ?? cfg.labels };
}

/**
 * timm model_args that change the forward without adding or renaming a tensor, so the weight check cannot
 * catch them: anything but the plain GELU and LayerNorm is refused rather than run as if it were.
 */
export function refuseTimmLayers(args: Json, name: string): void {
  for (const [k, plain] of [['act_layer', 'gelu'], ['norm_layer', 'layernorm']] as const) {
    const v = args[k];
    if (v !== undefined && v !== null && String(v).toLowerCase() !== plain) {
      throw new ModelError(`${name}: model_args.${k} "${String(v)}" is not supported (${plain} only)`);
    }
  }
}

/**
 * How many classes a Hugging Face classifier config has, as transformers' PretrainedConfig decides: id2label's
 * length when there is one (it wins over a disagreeing num_labels), else num_labels, else 2.
 */
export function hfNumLabels(cfg: Json, labels: string[] | null): number {
  if (labels) return labels.length;
  return cfg.num_labels === undefined || cfg.num_labels === null ? 2 : num(cfg.num_labels, 'num_labels');
}

/** Hugging Face's placeholder labels (LABEL_0, LABEL_1, ...) carry no information. */
export function meaningfulLabels(labels: string[] | null): string[] | null {
  return labels && labels.every((l, i) => l === `LABEL_${i}`) ? null : labels;
}

/** HF's `problem_type`, the part of it that changes how scores are made. */
export function problemTypeOf(cfg: Json): 'single_label_classification' | 'multi_label_classification' | null {
  const p = cfg.problem_type;
  return p === 'multi_label_classification' || p === 'single_label_classification' ? p : null;
}

/**
 * The head fields of a Hugging Face `config.json` (`vit export`): id2label and label2id from the labels, or
 * LABEL_i, which readers (ours and transformers) treat as "no names of its own", so ImageNet-sized heads get
 * the bundled ImageNet names; and problem_type where the model has one, since it decides sigmoid or softmax.
 */
export function hfHeadFields(numClasses: number, labels: string[] | null | undefined, problemType: string | null): Json {
  const names = labels ?? Array.from({ length: numClasses }, (_, i) => `LABEL_${i}`);
  return {
    id2label: Object.fromEntries(names.map((n, i) => [String(i), n])),
    label2id: Object.fromEntries(names.map((n, i) => [n, i])),
    ...(problemType === null ? {} : { problem_type: problemType }),
  };
}

/** Which dialect a config.json is written in, and the field that names its architecture. */
export function dialectOf(cfg: Json, name: string): { dialect: 'hf'; key: string } | { dialect: 'timm'; key: string } {
  if (typeof cfg.architecture === 'string' || cfg.pretrained_cfg !== undefined) return { dialect: 'timm', key: String(cfg.architecture ?? '') };
  if (cfg.model_type !== undefined) return { dialect: 'hf', key: String(cfg.model_type) };
  throw new ModelError(`${name}: config.json is neither a Hugging Face config (model_type) nor a timm one (architecture)`);
}
