/**
 * policy/advice-schema: the JSON of `meshback advise --json` and of the server's GET /v1/advice
 * and GET /v1/anomalies (one shape for both), as valibot schemas; `npm run schemas` exports them
 * to docs/schemas/advice.json and docs/schemas/anomalies.json. The meaning: docs/advisor.md.
 */
import { about, isoDate, v } from '../util/schema.ts';

const num = (d: string) => about(v.number(), d);

export const AnomalyAlertSchema = v.object({
  policy: v.string(),
  kind: about(v.picklist(['spike', 'incompressible', 'mass-delete', 'mass-rewrite']), 'what changed: a change-rate spike, incompressible (encrypted-looking) new data, a mass deletion, a mass rewrite or rename'),
  snapshot: about(v.string(), 'the snapshot the change showed in (full id)'),
  time: about(isoDate(), 'its time'),
  host: v.string(),
  paths: v.array(v.string()),
  severity: v.picklist(['warning', 'critical']),
  message: about(v.string(), 'one line for people'),
  evidence: about(v.record(v.string(), v.number()), 'the figures behind it (docs/advisor.md, "Anomalies")'),
});

export const ScheduleEstimateSchema = v.object({
  schedule: about(v.string(), 'e.g. "every 15m", or the policy\'s own schedule text'),
  intervalSeconds: v.number(),
  current: about(v.boolean(), "the policy's current schedule"),
  runsPerDay: v.number(),
  worstLossSeconds: num('interval + backup window at the busiest hour: the most data (in time) a disaster loses'),
  rpoMet: v.optional(about(v.boolean(), 'worst-case loss within the RPO less the margin (absent: the policy has no rpo)')),
  windowSeconds: num('predicted backup duration at the busiest hour of day'),
  storedBytesPerDay: num('predicted bytes written to the repository per day (before retention and prune)'),
  storedBytesPerMonth: num('storedBytesPerDay * 30'),
  cost: num('storedBytesPerDay + runsPerDay * the per-run overhead (bytes)'),
});

export const AdviceSchema = v.object({
  policy: v.string(),
  currentSchedule: v.optional(v.string()),
  rpoSeconds: v.optional(v.number()),
  backups: num('backups measured (each against the previous one)'),
  hours: num('hours they cover'),
  bytesAddedPerHour: num('raw new data per hour, measured'),
  bytesStoredPerHour: num('bytes written to the repository per hour, measured'),
  compressibility: v.optional(num('bytes stored / bytes added of the new data')),
  busiestHourUtc: v.optional(num('hour of day (UTC) with the most new data')),
  candidates: v.array(ScheduleEstimateSchema),
  recommended: v.optional(about(v.string(), 'the cheapest schedule that meets the RPO; absent: see reason')),
  reason: about(v.string(), 'why that one, or why none'),
});

export const PolicyAdviceSchema = v.object({
  policy: v.string(),
  repository: v.string(),
  advice: v.optional(AdviceSchema),
  anomalies: v.optional(
    v.object({
      open: about(v.array(AnomalyAlertSchema), 'alerts not acknowledged, oldest first'),
      holdBefore: v.optional(about(isoDate(), 'retention keeps every snapshot of this time or older (the oldest open alert\'s)')),
    }),
  ),
  error: v.optional(about(v.object({ code: v.string(), message: v.string() }), 'the repository could not be read')),
});

export const AdviceReportSchema = v.pipe(
  v.object({
    generated: isoDate(),
    policies: v.array(PolicyAdviceSchema),
  }),
  v.metadata({ title: 'meshback advice', description: 'meshback advise --json (with message_type "summary") and GET /v1/advice: per policy the schedule advice and the open anomalies (docs/advisor.md).' }),
);
export type AdviceReport = v.InferOutput<typeof AdviceReportSchema>;
export type PolicyAdvice = v.InferOutput<typeof PolicyAdviceSchema>;

export const AnomaliesReportSchema = v.pipe(
  v.object({
    generated: isoDate(),
    open: about(v.array(AnomalyAlertSchema), 'every open alert of every policy, oldest first'),
    policies: v.array(v.object({ policy: v.string(), open: v.number(), holdBefore: v.optional(isoDate()), error: v.optional(v.object({ code: v.string(), message: v.string() })) })),
  }),
  v.metadata({ title: 'meshback anomalies', description: 'GET /v1/anomalies: the open anomaly alerts (docs/advisor.md, "Anomalies").' }),
);
export type AnomaliesReport = v.InferOutput<typeof AnomaliesReportSchema>;
