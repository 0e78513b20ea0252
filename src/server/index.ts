/**
 * server: the services of `meshback server` beyond the scheduler: the run registry (every run,
 * its status and typed events), the HTTP API over it (hono: policies, runs, a CI/CD trigger,
 * server-sent events, snapshots, drills) and where it listens. The CLI (src/cli/commands/server.ts)
 * wires them to the scheduler and the policy file. Nothing here prints.
 */
export { RunRegistry, newRunId } from './runs.ts';
export type { RegistryChange, RegistryOptions, Subscriber } from './runs.ts';
export { createApi } from './app.ts';
export type { Api, ApiOptions, MetricsSource, TriggerOutcome } from './app.ts';
export { DEFAULT_LISTEN, isLoopback, listen, parseListen } from './listen.ts';
export type { ListenAddress, Listening } from './listen.ts';
export * from './schemas.ts';
export { Metrics, loadNewestSnapshots } from './metrics.ts';

export { DIFF_LIMIT } from './ui-routes.ts';
export type { CheckRecord, RepoAccess, RestoreRecord, UiOptions } from './ui-routes.ts';
