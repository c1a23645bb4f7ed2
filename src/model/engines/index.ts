/**
 * The engines as a table. `auto` takes the first row that runs the requested dtype on the requested device and
 * loads here. Each row's module is imported only when that engine is asked about: a run pays only for the
 * runtime it uses, and a machine where onnxruntime-node's native library cannot load still runs on tfjs.
 */
import { ModelError, UsageError } from '../../errors.js';
import type { Device, Dtype, Engine, EngineKind, EngineName, EngineRequest } from './engine.js';

export const ENGINE_NAMES = ['auto', 'onnx', 'tfjs'] as const;
export type EngineChoice = (typeof ENGINE_NAMES)[number];

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/** In the order `auto` tries them. */
export const ENGINES: readonly EngineKind[] = [
  {
    name: 'onnx',
    dtypes: ['fp32', 'int8'],
    devices: ['cpu', 'cuda'],
    unavailable: async () => {
      try {
        await (await import('./onnx-session.js')).onnxRuntimeVersion();
        return null;
      } catch (e) {
        return `onnxruntime-node does not load here: ${firstLine(e)}`;
      }
    },
    start: async (req) => (await import('./onnx.js')).startOnnx(req),
  },
  {
    name: 'tfjs',
    dtypes: ['fp32'],
    devices: ['cpu'],
    unavailable: async () => null,
    start: async (req) => (await import('./tfjs.js')).startTfjs(req),
  },
];

function kind(name: EngineName): EngineKind {
  return ENGINES.find((k) => k.name === name)!;
}

/**
 * The engine a run with this choice uses. An engine asked for by name must support the dtype and device
 * (else a usage error) and load here (else a model error saying why); `auto` says in verbose mode which
 * engines it passed over.
 */
export async function chooseEngine(choice: EngineChoice, dtype: Dtype, device: Device, verbose: (m: string) => void = () => {}): Promise<EngineKind> {
  if (!ENGINE_NAMES.includes(choice)) throw new UsageError(`unknown engine "${choice}"; choose one of ${ENGINE_NAMES.join(', ')}`);
  if (choice !== 'auto') {
    const k = kind(choice);
    if (!k.dtypes.includes(dtype)) throw new UsageError(`the ${k.name} engine runs ${k.dtypes.join(', ')} only, not --dtype ${dtype}${dtype !== 'fp32' ? ' (use --engine onnx)' : ''}`);
    if (!k.devices.includes(device)) throw new UsageError(`the ${k.name} engine runs on ${k.devices.join(', ')} only, not --device ${device}`);
    const why = await k.unavailable();
    if (why) throw new ModelError(`the ${k.name} engine cannot run: ${why}`);
    return k;
  }
  const passed: string[] = [];
  for (const k of ENGINES) {
    if (!k.dtypes.includes(dtype) || !k.devices.includes(device)) continue;
    const why = await k.unavailable();
    if (!why) {
      if (passed.length > 0) verbose(`engine: ${passed.join('; ')}; using ${k.name}`);
      return k;
    }
    passed.push(`${k.name}: ${why}`);
  }
  throw new ModelError(`no engine can run --dtype ${dtype} on --device ${device} here${passed.length ? `: ${passed.join('; ')}` : ''}`);
}

/** Start an engine of the given choice for a request. */
export async function startEngine(choice: EngineChoice, req: EngineRequest): Promise<Engine> {
  const k = await chooseEngine(choice, req.settings.dtype, req.settings.device, req.verbose);
  return k.start(req);
}
