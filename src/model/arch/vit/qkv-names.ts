/** HF and Google checkpoints name the parts of the attention input projection query, key and value. */
export const QKV_NAMES = { q: 'query', k: 'key', v: 'value', qkv: 'qkv' } as const;
