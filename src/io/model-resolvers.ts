/**
 * Resolvers for model names that are neither a directory nor a preset (the hub adds one for ORG/NAME). Kept
 * apart from model-source.ts so that registering one, which every run does at start-up, loads nothing else.
 */
export type ModelResolver = (name: string) => Promise<string | null>;

export const modelResolvers: ModelResolver[] = [];

export function registerModelResolver(r: ModelResolver): void {
  modelResolvers.push(r);
}
