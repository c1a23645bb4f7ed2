import type { DownloadProgress, FetchOptions } from '../io/hub.js';
import { registerModelResolver } from '../io/model-resolvers.js';
import { createBar, progressEnabled, type Bar } from '../io/progress.js';
import { writeAll } from '../io/streams.js';
import type { Context } from '../pipeline/context.js';
import type { CommandBody } from './options.js';


type Hub = typeof import('../io/hub.js');

/** The hub client, loaded only when a hub model is asked for: every run registers the resolver. */
function loadHub(): Promise<Hub> {
  return import('../io/hub.js');
}

/** A byte bar per large file, shown under the same conditions as a run's bar (a TTY stderr, not CI, not --quiet). */
function downloadBar(hub: Hub, ctx: Context): DownloadProgress | undefined {
  if (!progressEnabled({ stderr: ctx.stderr, quiet: ctx.quiet })) return undefined;
  let bar: Bar | null = null;
  return {
    start(file, totalBytes, doneBytes) {
      if (totalBytes !== null && totalBytes < hub.LARGE_FILE) return;
      bar = createBar(totalBytes, { stderr: ctx.stderr, quiet: ctx.quiet, unit: 'bytes', label: file, write: ctx.note });
      bar.set(doneBytes);
    },
    update(doneBytes) {
      bar?.set(doneBytes);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

function hubOptions(hub: Hub, ctx: Context): FetchOptions {
  return { progress: downloadBar(hub, ctx), note: ctx.note };
}

let hubContext: Context | null = null;

/**
 * Lets `--model ORG/NAME[@REV]` name a hub model on every command: served from the cache when it holds the
 * model, fetched otherwise (unless offline). Called by the CLI for each run, so notes go to that run's stderr.
 */
export function enableHubModels(ctx: Context): void {
  if (!hubContext) {
    registerModelResolver(async (name) => {
      const hub = await loadHub();
      return hub.resolveHubModel(name, hubOptions(hub, hubContext!));
    });
  }
  hubContext = ctx;
}

export function fetchCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y
      .positional('model', { type: 'string', describe: 'hub model id ORG/NAME (optionally ORG/NAME@REVISION)' })
      .option('revision', { type: 'string', describe: 'branch, tag or commit hash (default: main)' })
      .example('$0 fetch google/vit-base-patch16-224', 'download config and weights; prints the snapshot directory')
      .example('$0 classify photos/ --model "$(vit fetch google/vit-base-patch16-224)"', 'fetch once, then run from the cache')
      .example('HF_HUB_OFFLINE=1 $0 fetch google/vit-base-patch16-224', 'only look in the cache')
      .epilog('Environment: HF_HUB_CACHE or HF_HOME (cache location), HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE=1.'),
    handler: async (argv) => {
      const a = argv as Record<string, unknown>;
      const hub = await loadHub();
      const r = await hub.fetchModel(a.model as string, { ...hubOptions(hub, ctx), revision: a.revision as string | undefined });
      ctx.note(
        `${r.repo}@${r.revision} is commit ${r.commit}: ` +
        (r.downloaded.length > 0 ? `downloaded ${r.downloaded.join(', ')}` : 'everything was in the cache'),
      );
      await writeAll(ctx.stdout, `${r.dir}\n`);
    },
  };
}
