/**
 * The layering of DESIGN.md as rules (`npx depcruise src`; test/imports.test.ts runs them): data flows
 * inputs → images → batches → engine → rows → sink, and each layer imports only the ones below it.
 */
module.exports = {
  forbidden: [
    {
      name: 'model-knows-no-outside',
      comment: 'src/model (architectures, checkpoints, engines) touches no file system and knows no command',
      severity: 'error',
      from: { path: '^src/model/' },
      to: { path: '^src/(io|pipeline|commands|cli)' },
    },
    {
      name: 'io-below-the-pipeline',
      comment: 'src/io reads and writes the outside world for the pipeline; it never calls back up',
      severity: 'error',
      from: { path: '^src/io/' },
      to: { path: '^src/(pipeline|commands|cli)' },
    },
    {
      name: 'io-knows-no-architecture',
      comment: 'io never knows what a ViT is: it reaches architectures through the table (src/model/arch/index.ts)',
      severity: 'error',
      from: { path: '^src/io/' },
      to: { path: '^src/model/arch/[^/]+/' },
    },
    {
      name: 'pipeline-below-the-commands',
      severity: 'error',
      from: { path: '^src/pipeline/' },
      to: { path: '^src/(commands|cli)' },
    },
    {
      name: 'architectures-apart',
      comment: 'an architecture folder uses its own files and the shared model layer, never another architecture',
      severity: 'error',
      from: { path: '^src/model/arch/([^/]+)/' },
      to: { path: '^src/model/arch/[^/]+/', pathNot: '^src/model/arch/$1/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
