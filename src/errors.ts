/** Errors carry the exit status they map to, so the CLI can turn any of them into the right code. */
export abstract class VitError extends Error {
  abstract readonly exitCode: number;
  /** The first line of the message; `details` are the lines under it (the CLI prints each on its own line). */
  readonly headline: string;
  readonly details: readonly string[];
  constructor(message: string, details: readonly string[] = []) {
    super(details.length === 0 ? message : `${message}\n  ${details.join('\n  ')}`);
    this.name = new.target.name;
    this.headline = message;
    this.details = details;
  }
}

/** A bad command line: unknown option, bad preset name, conflicting flags. Exit 2. */
export class UsageError extends VitError {
  readonly exitCode = 2;
}

/** A whole number ≥ min, from an option's or an environment variable's value (`what` names it), or a UsageError. */
export function wholeNumber(value: string | undefined, what: string, min: number): number {
  const n = Number(value);
  if (value === undefined || !/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`${what} must be a whole number ≥ ${min}, not "${value ?? ''}"`);
  }
  return n;
}

/**
 * A library option or input of the wrong type, quoting the start of what was given (the CLI's parser gives
 * strings; plain JS can pass anything): `randomWeights must be true or false, not "yes"`.
 */
export function wrongType(field: string, want: string, value: unknown): UsageError {
  let shown: string | undefined;
  try {
    shown = JSON.stringify(value);
  } catch {
    // A BigInt, or an object that holds itself.
  }
  return new UsageError(`${field} must be ${want}, not ${(shown ?? String(value)).slice(0, 40)}`);
}

/** The model cannot be built or run: bad config, unsupported architecture. Exit 1. */
export class ModelError extends VitError {
  readonly exitCode = 1;
}

/** A checkpoint that cannot be read or does not fit the model. Exit 1. */
export class WeightsError extends VitError {
  readonly exitCode = 1;
}

/** One input file that cannot be read or decoded; becomes an error row, never stops a run. */
export class InputError extends VitError {
  readonly exitCode = 3;
}

/** The output could not be written (disk full, bad path). Exit 1. */
export class OutputError extends VitError {
  readonly exitCode = 1;
}
