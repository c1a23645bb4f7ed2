/**
 * Whether onnxruntime-node's optional execution-provider libraries are installed beside its binding. They are
 * not in the npm package: its install script downloads them (ONNXRUNTIME_NODE_INSTALL=cuda12), so a machine
 * with only the registry reachable has none. Asking before a session is made gives one clear line instead of
 * onnxruntime's own log of a failed dlopen.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import type { Device } from '../model/engines/engine.js';

/** The provider libraries each non-CPU device needs (Linux names; other platforms ship no CUDA provider). */
const LIBRARIES: Partial<Record<Device, string[]>> = {
  cuda: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'],
};

export function providerInstalled(device: Device): boolean {
  const libs = LIBRARIES[device];
  if (libs === undefined) return true;
  let root: string;
  try {
    root = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  } catch {
    return false;
  }
  const bin = join(root, 'bin', 'napi-v6', platform(), arch());
  return libs.every((l) => existsSync(join(bin, l)));
}
