/**
 * npm run schemas: writes the JSON Schema of every documented file format to docs/schemas/, from
 * the valibot schemas the code reads those files with (the schemas are also the docs), through
 * @valibot/to-json-schema (a devDependency: only this script imports it, never src/). `--check`
 * writes nothing and exits 1 when a file in docs/schemas/ differs from what the code says (the
 * unit test test/unit/schemas.test.ts runs the same comparison).
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { toJsonSchema } from '@valibot/to-json-schema';
import type { v } from '../src/util/schema.ts';
import { SnapshotSchema } from '../src/snapshot/manifest.ts';
import { TreeSchema } from '../src/snapshot/tree.ts';
import { KeyFileSchema, RepoConfigSchema } from '../src/repository/index.ts';
import { LockInfoSchema } from '../src/repository/lock.ts';
import { BenchResultsSchema } from '../lab/bench/fault/types.ts';
import { AnyHookSchema, PolicyFileSchema } from '../src/policy/schema.ts';
import { DiscoverySchema } from '../src/k8s/schema.ts';
import { AdviceReportSchema, AnomaliesReportSchema } from '../src/policy/advice-schema.ts';
import { AnomalyAcksSchema } from '../src/policy/acks.ts';
import { ErrorAnswerSchema, HealthSchema, PolicyListSchema, RunListSchema, RunRecordSchema, SnapshotListSchema, SseEventDataSchema, TriggerAnswerSchema, TriggerRequestSchema } from '../src/server/schemas.ts';

export const SCHEMA_DIR = path.resolve(import.meta.dirname, '../docs/schemas');

/** File name in docs/schemas/ -> the schema the code checks that format with. */
export const DOCUMENTED: Record<string, v.GenericSchema> = {
  'snapshot.json': SnapshotSchema,
  'tree.json': TreeSchema,
  'config.json': RepoConfigSchema,
  'key.json': KeyFileSchema,
  'lock.json': LockInfoSchema,
  'bench-results.json': BenchResultsSchema,
  'policy.json': PolicyFileSchema,
  // the HTTP API of meshback server (docs/api.md)
  'api-run.json': RunRecordSchema,
  'api-runs.json': RunListSchema,
  'api-trigger-request.json': TriggerRequestSchema,
  'api-trigger-answer.json': TriggerAnswerSchema,
  'api-error.json': ErrorAnswerSchema,
  'api-policies.json': PolicyListSchema,
  'api-snapshots.json': SnapshotListSchema,
  'api-event.json': SseEventDataSchema,
  'api-health.json': HealthSchema,
  // meshback k8s discover --json (docs/design.md, "Kubernetes: discover")
  'k8s-discover.json': DiscoverySchema,
  // meshback advise --json and GET /v1/advice, GET /v1/anomalies (docs/advisor.md)
  'advice.json': AdviceReportSchema,
  'anomalies.json': AnomaliesReportSchema,
  // STATE_DIR/anomalies.json: acknowledged anomaly alerts
  'anomaly-acks.json': AnomalyAcksSchema,
};

/** Named parts of a documented format, shown once under $defs and referred to where they occur. */
const DEFINITIONS: Record<string, Record<string, v.GenericSchema>> = {
  'policy.json': { hook: AnyHookSchema },
};

/** The text of every file of docs/schemas/, as the code's schemas give it. */
export function schemaFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, schema] of Object.entries(DOCUMENTED)) {
    // typeMode 'input': what a file may hold (the same as what the code gets: no schema
    // transforms). Refinements (a power of 2, a dir node's subtree) are not expressible: they are
    // left out here (ignoreActions) and said in descriptions; anything else that cannot be
    // converted throws.
    const json = toJsonSchema(schema, { target: 'draft-2020-12', typeMode: 'input', errorMode: 'throw', ignoreActions: ['check', 'partial_check', 'raw_check'], ...(DEFINITIONS[name] !== undefined ? { definitions: DEFINITIONS[name] } : {}) });
    const { $schema, ...rest } = json; // $schema first, as JSON Schema files usually begin
    out[name] = JSON.stringify({ $schema, ...rest }, null, 2) + '\n';
  }
  return out;
}

/** Names of the files in docs/schemas/ that are missing or differ from `schemaFiles()`. */
export function staleSchemaFiles(dir = SCHEMA_DIR): string[] {
  return Object.entries(schemaFiles())
    .filter(([name, text]) => !existsSync(path.join(dir, name)) || readFileSync(path.join(dir, name), 'utf8') !== text)
    .map(([name]) => name);
}

if (import.meta.main) {
  if (process.argv.includes('--check')) {
    const stale = staleSchemaFiles();
    if (stale.length > 0) {
      process.stderr.write(`schemas: docs/schemas/ is out of date (${stale.join(', ')}): run 'npm run schemas'\n`);
      process.exit(1);
    }
    process.stdout.write(`schemas: docs/schemas/ matches the code (${Object.keys(DOCUMENTED).length} files)\n`);
  } else {
    mkdirSync(SCHEMA_DIR, { recursive: true });
    for (const [name, text] of Object.entries(schemaFiles())) writeFileSync(path.join(SCHEMA_DIR, name), text);
    process.stdout.write(`schemas: wrote ${Object.keys(DOCUMENTED).map((n) => `docs/schemas/${n}`).join(', ')}\n`);
  }
}
