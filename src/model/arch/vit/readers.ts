import { ModelError } from '../../../errors.js';
import { channelsOf } from '../../config.js';
import { hfNumLabels, labelsFromId2label, meaningfulLabels, refuseTimmLayers, timmHubCfg, num, pair, problemTypeOf, type Json } from '../../config-json.js';
import { preprocessFromHf, preprocessFromTimm } from '../../preprocess.js';
import { validateVitConfig, type ViTConfig } from './config.js';
import { VIT_PRESETS } from './presets.js';

/** A Hugging Face `config.json` (model_type vit or deit) plus its optional preprocessor config. */
export function vitFromHf(cfg: Json, pp: Json | null, name: string): ViTConfig {
  const act = cfg.hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new ModelError(`${name}: hidden_act "${String(act)}" is not supported (exact gelu only)`);
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  const classifier = archs.length === 0 || archs.some((a) => /ForImageClassification/.test(a));
  const labels = labelsFromId2label(cfg.id2label);
  // transformers' DeiT always has the distillation token; only the classifier with teacher has its head.
  const distilled = cfg.model_type === 'deit';
  const distilledHead = distilled && archs.some((a) => /WithTeacher/.test(a));
  const imgSize = pair(cfg.image_size ?? 224, 'image_size');
  const D = num(cfg.hidden_size ?? 768, 'hidden_size');
  const inChans = channelsOf(num(cfg.num_channels ?? 3, 'num_channels'), `${name}: num_channels`);
  return validateVitConfig({
    arch: 'vit',
    name,
    imgSize,
    patchSize: num(cfg.patch_size ?? 16, 'patch_size'),
    inChans,
    embedDim: D,
    depth: num(cfg.num_hidden_layers ?? 12, 'num_hidden_layers'),
    numHeads: num(cfg.num_attention_heads ?? 12, 'num_attention_heads'),
    mlpDim: num(cfg.intermediate_size ?? 4 * D, 'intermediate_size'),
    numClasses: classifier ? hfNumLabels(cfg, labels) : 0,
    representationSize: null,
    qkvBias: cfg.qkv_bias !== false,
    // transformers' ViTConfig default is 1e-12.
    layerNormEps: num(cfg.layer_norm_eps ?? 1e-12, 'layer_norm_eps'),
    classToken: true,
    distilled,
    distilledHead,
    globalPool: 'token',
    fcNorm: false,
    preprocess: preprocessFromHf(pp, imgSize, inChans, String(cfg.model_type ?? 'vit')),
    labels: classifier ? meaningfulLabels(labels) : null,
    problemType: problemTypeOf(cfg),
  });
}

/** A timm hub `config.json`: architecture (a preset, or vit_* fully described by model_args) + overrides. */
export function vitFromTimm(cfg: Json, name: string): ViTConfig {
  const arch = String(cfg.architecture ?? '');
  const args = (cfg.model_args ?? {}) as Json;
  const { pre, labelNames } = timmHubCfg(cfg);
  // Variants whose forward differs from the plain ViT; refusing them beats silently wrong outputs.
  for (const k of ['no_embed_class', 'reg_tokens', 'class_token_as_register', 'init_values', 'pos_embed']) {
    if (args[k] && !(k === 'pos_embed' && args[k] === 'learn')) throw new ModelError(`${name}: model_args.${k} is not supported`);
  }
  refuseTimmLayers(args, name);
  const base = VIT_PRESETS.lookup(arch) ?? VIT_PRESETS.lookup('vit_base_patch16_224')!;
  const D = args.embed_dim !== undefined ? num(args.embed_dim, 'embed_dim') : base.embedDim;
  const inputSize = Array.isArray(pre.input_size) ? pre.input_size as number[] : null;
  const imgSize: [number, number] = args.img_size !== undefined ? pair(args.img_size, 'img_size')
    : inputSize ? [num(inputSize[1], 'input_size'), num(inputSize[2], 'input_size')] : base.imgSize;
  const inChans = channelsOf(args.in_chans !== undefined ? num(args.in_chans, 'in_chans')
    : inputSize ? num(inputSize[0], 'input_size') : base.inChans, `${name}: in_chans`);
  const globalPool = String(args.global_pool ?? cfg.global_pool ?? base.globalPool);
  if (globalPool !== 'token' && globalPool !== 'avg') throw new ModelError(`${name}: global_pool "${globalPool}" is not supported (token, avg)`);
  const fcNorm = args.fc_norm === undefined || args.fc_norm === null ? globalPool === 'avg' : Boolean(args.fc_norm);
  const labels = Array.isArray(labelNames) ? labelNames.map(String) : null;
  const numClasses = cfg.num_classes !== undefined ? num(cfg.num_classes, 'num_classes')
    : args.num_classes !== undefined ? num(args.num_classes, 'num_classes') : labels?.length ?? base.numClasses;
  const repr = args.representation_size ?? args.pre_logits_size;
  const mlpDim = args.mlp_ratio !== undefined ? Math.round(D * num(args.mlp_ratio, 'mlp_ratio')) : args.embed_dim !== undefined ? 4 * D : base.mlpDim;
  return validateVitConfig({
    ...base,
    name,
    imgSize,
    inChans,
    patchSize: args.patch_size !== undefined ? num(args.patch_size, 'patch_size') : base.patchSize,
    embedDim: D,
    depth: args.depth !== undefined ? num(args.depth, 'depth') : base.depth,
    numHeads: args.num_heads !== undefined ? num(args.num_heads, 'num_heads') : base.numHeads,
    mlpDim,
    numClasses,
    representationSize: repr === undefined || repr === null ? base.representationSize : num(repr, 'representation_size'),
    qkvBias: args.qkv_bias !== undefined ? Boolean(args.qkv_bias) : base.qkvBias,
    layerNormEps: args.norm_eps !== undefined ? num(args.norm_eps, 'norm_eps') : base.layerNormEps,
    classToken: args.class_token !== undefined ? Boolean(args.class_token) : base.classToken,
    distilled: arch.includes('distilled') ? true : base.distilled,
    distilledHead: arch.includes('distilled') ? true : base.distilledHead,
    globalPool,
    fcNorm,
    preprocess: preprocessFromTimm(pre, imgSize, inChans, name),
    labels: labels && labels.length === numClasses ? labels : null,
  });
}
