/**
 * server/schemas: every body of the HTTP API (`meshback server --listen`), as valibot schemas: the
 * request body of `POST /v1/runs` is checked with them, the answers are built to them (the e2e
 * tests check the answers with them), and `npm run schemas` exports them to docs/schemas/api-*.json.
 * The API itself: docs/api.md.
 */
import type { DrillReport, RunReport } from '../policy/index.ts';
import { POLICY_NAME, POLICY_NAME_TEXT } from '../policy/schema.ts';
import { SnapshotSchema } from '../snapshot/manifest.ts';
import { about, hexId, isoDate, v } from '../util/schema.ts';

export const RUN_KINDS = ['backup', 'drill'] as const;
export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed'] as const;
export const RUN_REASONS = ['schedule', 'catch-up', 'first-run', 'trigger'] as const;
export type RunKind = (typeof RUN_KINDS)[number];
export type RunStatus = (typeof RUN_STATUSES)[number];
export type RunReason = (typeof RUN_REASONS)[number];

/** a run id: 16 hex digits */
export const RUN_ID = /^[0-9a-f]{16}$/;
const runId = () => v.pipe(v.string(), v.regex(RUN_ID, 'must be 16 lowercase hex digits (a run id)'));

const TAG_KEY = /^[^=\s]{1,64}$/;
const MAX_TAGS = 16;
/** a trigger's tags: KEY -> VALUE; a key has no '=' or white space; `policy` is meshback's */
export const TagsSchema = about(
  v.pipe(
    v.record(
      v.pipe(v.string(), v.regex(TAG_KEY, 'must be a tag key of 1 to 64 characters without "=" or white space'), v.check((k) => k !== 'policy', 'is "policy", the tag meshback gives every snapshot of a policy (policy=NAME): use another key')),
      v.pipe(v.string(), v.maxLength(256), v.regex(/^[^\n\r]*$/, 'must be one line')),
    ),
    v.check((o) => Object.keys(o).length <= MAX_TAGS, `must have at most ${MAX_TAGS} tags`),
  ),
  `tags for the snapshot, KEY -> VALUE (at most ${MAX_TAGS}; the snapshot gets KEY=VALUE beside the policy's tags)`,
);

const ErrorInfoSchema = v.object({
  code: about(v.string(), 'the error code (docs/design.md, "Error handling and exit codes"), or INTERRUPTED: the server stopped before the run ended'),
  message: about(v.string(), 'one line: what happened and what to do'),
});

export const RunRecordSchema = v.pipe(
  v.object({
    id: about(runId(), 'the run id (16 random hex digits)'),
    kind: about(v.picklist(RUN_KINDS), 'backup: a run of the policy; drill: a restore drill of it'),
    policy: about(v.pipe(v.string(), v.regex(POLICY_NAME, POLICY_NAME_TEXT)), 'the policy'),
    reason: about(v.picklist(RUN_REASONS), 'why it ran: its schedule, a catch-up after downtime, a first run, or a trigger (POST /v1/runs)'),
    tags: about(v.record(v.string(), v.string()), "a trigger's tags (empty otherwise)"),
    status: v.picklist(RUN_STATUSES),
    queuedAt: about(isoDate(), 'when it was asked for'),
    startedAt: v.optional(isoDate()),
    finishedAt: v.optional(isoDate()),
    snapshotId: v.optional(about(hexId(), 'the snapshot it saved (a backup), or restored (a drill)')),
    error: v.optional(about(ErrorInfoSchema, 'why it failed')),
    report: v.optional(about(v.looseObject({ policy: v.string(), ok: v.boolean() }), "the run's report (as `meshback run --json` prints it, in camelCase), or the drill's")),
  }),
  v.metadata({ title: 'meshback run record', description: 'A run of `meshback server` (GET /v1/runs/ID; a line of STATE_DIR/runs.jsonl)' }),
);
/** A run record; its report is the run's RunReport (src/policy/run.ts) or a drill's report. */
export type RunRecord = Omit<v.InferOutput<typeof RunRecordSchema>, 'report'> & { report?: RunReport | DrillReport };

export const RunListSchema = v.pipe(v.array(RunRecordSchema), v.metadata({ title: 'GET /v1/runs, GET /v1/drills', description: 'run records, newest first, without their reports (GET /v1/runs/ID has it)' }));

export const TriggerRequestSchema = v.pipe(
  v.strictObject({
    policy: about(v.pipe(v.string(), v.regex(POLICY_NAME, POLICY_NAME_TEXT)), 'the policy to run'),
    tags: v.optional(TagsSchema),
  }),
  v.metadata({ title: 'POST /v1/runs request', description: 'starts a run of a policy now; e.g. {"policy":"orders","tags":{"deploy":"v1.4.2"}}' }),
);
export type TriggerRequest = v.InferOutput<typeof TriggerRequestSchema>;

export const TriggerAnswerSchema = v.pipe(
  v.object({
    id: runId(),
    status: about(v.picklist(['queued', 'running']), 'running: started; queued: waits for a free slot (--max-runs)'),
    policy: v.string(),
    url: about(v.string(), 'the run: GET it for its status, GET URL/events for its events'),
  }),
  v.metadata({ title: 'POST /v1/runs answer (202)' }),
);

export const ErrorAnswerSchema = v.pipe(
  v.object({
    error: v.object({
      code: about(v.string(), 'BAD_REQUEST, UNAUTHORIZED, NOT_FOUND, BUSY, RATE_LIMITED, STOPPING, INTERNAL, or an engine error code'),
      message: about(v.string(), 'one line: what happened and what to do'),
      run: v.optional(about(runId(), 'BUSY: the run that is going')),
    }),
  }),
  v.metadata({ title: 'an error answer of the API (status 4xx or 5xx)' }),
);

export const PolicyInfoSchema = v.object({
  name: v.string(),
  repository: about(v.string(), 'the repository location'),
  schedule: v.optional(about(v.string(), 'as in the policy file; absent: run only when triggered')),
  nextRun: v.optional(about(isoDate(), 'the next scheduled run')),
  rpoSeconds: v.optional(about(v.number(), 'the recovery point objective')),
  drillSchedule: v.optional(v.string()),
  tags: about(v.array(v.string()), "the policy's KEY=VALUE tags"),
  running: v.optional(about(runId(), 'the run of it queued or going now')),
  lastRun: v.optional(about(RunRecordSchema, 'its last finished backup run (without the report)')),
  lastSuccess: v.optional(about(isoDate(), 'when its last successful backup run ended')),
});
export const PolicyListSchema = v.pipe(v.array(PolicyInfoSchema), v.metadata({ title: 'GET /v1/policies', description: 'the policies of the policy file, in its order' }));
export type PolicyInfo = Omit<v.InferOutput<typeof PolicyInfoSchema>, 'lastRun'> & { lastRun?: RunRecord };

export const SnapshotRowSchema = v.object({
  id: hexId(),
  repository: about(v.string(), 'the repository location'),
  policy: about(v.string(), 'the policy (its policy=NAME tag)'),
  snapshot: SnapshotSchema,
});
export const SnapshotListSchema = v.pipe(v.array(SnapshotRowSchema), v.metadata({ title: 'GET /v1/snapshots', description: "the snapshots of the policies (tagged policy=NAME) in their repositories, newest first" }));
export type SnapshotRow = v.InferOutput<typeof SnapshotRowSchema>;

export const HealthSchema = v.pipe(v.object({ ok: v.literal(true), version: v.string(), uptimeSeconds: v.number(), running: v.array(v.string()) }), v.metadata({ title: 'GET /healthz' }));

/**
 * The data of a server-sent event: `event: run` carries a RunRecord (a status change; the report
 * is left out but for the final one), `event: event` one typed event of a run (src/events).
 */
export const SseEventDataSchema = v.pipe(
  v.object({
    run: runId(),
    seq: about(v.pipe(v.number(), v.safeInteger(), v.minValue(1)), "the event's number in its run, from 1 (progress events are folded in the buffer: numbers may skip)"),
    event: about(v.looseObject({ type: v.string() }), 'a typed event (op-start, phase, progress, warning, item-error, note, summary; docs/design.md)'),
  }),
  v.metadata({ title: 'server-sent event "event"', description: 'GET /v1/events and GET /v1/runs/ID/events; the data of an "event: run" is a run record' }),
);
