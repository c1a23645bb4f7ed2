import type { PositionalOptions } from 'yargs';

/** The positional inputs of every command that runs a model over images. */
export const INPUTS: PositionalOptions = {
  type: 'string', array: true, describe: 'image files, directories, globs, or - for a list of paths on stdin',
};
