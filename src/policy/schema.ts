/**
 * policy/schema: the policy file (YAML), as valibot schemas. The file names policies, each one
 * backup job: its sources, repository, schedule, retention, RPO target, hooks, restore drill and
 * tags (docs/design.md, "Policies"; the JSON Schema is docs/schemas/policy.json). Unknown fields
 * are refused (a misspelt `keep-daliy` must not silently keep nothing). Durations use the one
 * grammar of src/util/units.ts (`m` is minutes); schedules are `every DURATION` or
 * `cron: EXPR` (five or six fields, read by croner) with an optional `timezone` (IANA name).
 */
import { Cron } from 'croner';
import { about, v } from '../util/schema.ts';
import { durationField, isDuration } from './fields.ts';
import { PresetSchema } from './presets/index.ts';
import { WINDOW_TEXT, parseWindow } from './window.ts';

export { isDuration };

const duration = () => about(durationField(), 'a duration: 30s, 15m, 1h30m, 7d, 2w, 1y6mo (m is minutes, mo months)');

/** The problem with a schedule text, or undefined when it is one. */
export function scheduleProblem(s: string, timezone?: string): string | undefined {
  const every = /^every\s+(\S+)$/.exec(s);
  if (every !== null) return isDuration(every[1]!) ? undefined : `must be "every DURATION" with a duration such as 15m, 1h, 24h (m is minutes)`;
  const cron = /^cron:\s*(.+)$/.exec(s);
  if (cron === null) return 'must be "every DURATION" (e.g. every 15m) or "cron: EXPR" (e.g. cron: 0 2 * * *)';
  try {
    new Cron(cron[1]!.trim(), { paused: true, ...(timezone !== undefined ? { timezone } : {}) }).stop();
    return undefined;
  } catch (err) {
    return `must be a valid cron expression (${err instanceof Error ? err.message : String(err)}): five fields, minute hour day-of-month month day-of-week, e.g. cron: 0 2 * * *`;
  }
}

const SCHEDULE_TEXT = 'must be "every DURATION" (e.g. every 15m) or "cron: EXPR" (e.g. cron: 0 2 * * *)';
const schedule = () =>
  about(
    v.pipe(
      v.string(SCHEDULE_TEXT),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        const p = scheduleProblem(dataset.value);
        if (p !== undefined) addIssue({ message: p });
      }),
    ),
    '"every DURATION" (e.g. every 15m) or "cron: EXPR" (five fields, e.g. cron: 0 2 * * *)',
  );

function isTimeZone(s: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: s });
    return true;
  } catch {
    return false;
  }
}
const TZ_TEXT = 'must be an IANA time zone such as Europe/Berlin or UTC';
const timezone = () => about(v.pipe(v.string(TZ_TEXT), v.check(isTimeZone, TZ_TEXT)), 'IANA time zone of a cron schedule (default: the host\'s)');

const COUNT_TEXT = 'must be a whole number of at least 1, or -1 for unlimited';
const count = (what: string) => about(v.pipe(v.number(COUNT_TEXT), v.safeInteger(), v.check((n) => n === -1 || n >= 1, COUNT_TEXT)), what);
const tagText = 'must be KEY=VALUE';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NAME_TEXT = 'must be a name of letters, digits, ".", "_" and "-" (at most 63, starting with a letter or digit)';

export const RetentionSchema = v.strictObject({
  'keep-last': v.optional(count('keep the N newest snapshots')),
  'keep-hourly': v.optional(count('keep the newest snapshot of each of the N newest hours that have one (UTC)')),
  'keep-daily': v.optional(count('the same per day (UTC)')),
  'keep-weekly': v.optional(count('the same per ISO-8601 week')),
  'keep-monthly': v.optional(count('the same per calendar month')),
  'keep-yearly': v.optional(count('the same per calendar year')),
  'keep-within': v.optional(about(duration(), "keep snapshots made within this duration before the newest one")),
  'keep-tag': v.optional(about(v.array(v.pipe(v.string(tagText), v.regex(/^[^=\s]+=.*$/, tagText))), 'keep snapshots that carry any of these KEY=VALUE tags')),
});

const HOOK_TIMEOUT_DEFAULT = '5m';
const HTTP_HOOK_TIMEOUT_DEFAULT = '30s';
export const ExecHookSchema = v.strictObject({
  exec: about(v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1)), 'the program and its arguments (no shell: write [sh, -c, "..."] for one); the program is looked up in PATH'),
  timeout: v.optional(about(duration(), `killed (SIGTERM, then SIGKILL 5 s later) after this long (default ${HOOK_TIMEOUT_DEFAULT})`)),
});

const URL_TEXT = 'must be an http:// or https:// URL';
const isHttpUrl = (s: string): boolean => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
};
/** RFC 9110 token: what a header name may be */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// a header value is never shown (it may be a token): the message does not start with 'must'
const HEADER_VALUE_TEXT = 'is not one line of text (it holds control characters; its value is not shown)';
// eslint-disable-next-line no-control-regex
const HEADER_VALUE = /^[^\x00-\x08\x0a-\x1f\x7f]*$/;
export const HTTP_METHODS = ['POST', 'GET', 'PUT'] as const;

export const HttpHookSchema = v.pipe(
  v.strictObject({
    http: about(v.pipe(v.string(URL_TEXT), v.check(isHttpUrl, URL_TEXT)), 'the URL to call (http:// or https://); redirects are not followed; messages name it without its user info and query'),
    method: v.optional(about(v.picklist(HTTP_METHODS), 'POST (default), GET or PUT')),
    headers: v.optional(
      about(
        v.record(v.pipe(v.string(), v.regex(HEADER_NAME, 'must be a header name (letters, digits and !#$%&\'*+.^_`|~-)')), v.pipe(v.string(), v.regex(HEADER_VALUE, HEADER_VALUE_TEXT))),
        'request headers (NAME: VALUE); their values are never printed, but a token belongs in headers-file, not in the policy file',
      ),
    ),
    'headers-file': v.optional(about(v.pipe(v.string(), v.minLength(1)), 'a file of "Name: value" lines (# comments), read at each call, for headers holding secrets (relative: to the policy file)')),
    body: v.optional(
      about(
        v.union([v.string(), v.array(v.unknown()), v.record(v.string(), v.unknown())]),
        'what POST or PUT sends instead of the run\'s context (a JSON object of policy, phase, repository, snapshot_id, error, failed_phase, host, time): a string as it is (text/plain), an object or list as JSON; ${MESHBACK_POLICY}-style variables of the run\'s context are replaced in it',
      ),
    ),
    timeout: v.optional(about(duration(), `the request fails after this long without a complete answer (default ${HTTP_HOOK_TIMEOUT_DEFAULT})`)),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (dataset.typed && dataset.value.method === 'GET' && dataset.value.body !== undefined) addIssue({ message: 'is not sent with method GET: use POST or PUT, or leave body out', path: [{ type: 'object', origin: 'value', input: dataset.value, key: 'body', value: dataset.value.body }] });
  }),
);

type ExecHookInput = v.InferOutput<typeof ExecHookSchema>;
type HttpHookInput = v.InferOutput<typeof HttpHookSchema>;
export type { ExecHookInput, HttpHookInput };

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
/** what a hook with neither `exec` nor `http` is told */
const NEITHER = v.pipe(
  v.looseObject({}),
  v.check(() => false, 'is missing exec: [PROGRAM, ARG...] or http: URL (a hook is one of them)'),
) as unknown as v.GenericSchema<unknown, ExecHookInput | HttpHookInput>;
/** Either hook shape: what the JSON Schema export shows ($defs/hook). */
export const AnyHookSchema = v.union([ExecHookSchema, HttpHookSchema]);
/**
 * A hook: `exec` (a program) or `http` (a request). The shape is chosen by the key the hook has,
 * so a mistake is reported against the one the user meant (a union would only say "matches none
 * of the allowed shapes"); without an input (the JSON Schema export) it is the union of both.
 */
export const HookSchema = v.lazy((input: unknown): v.GenericSchema<unknown, ExecHookInput | HttpHookInput> => {
  if (input === undefined) return AnyHookSchema;
  if (isObject(input) && 'http' in input) return HttpHookSchema;
  if (isObject(input) && !('exec' in input)) return NEITHER;
  return ExecHookSchema;
});

export const HooksSchema = v.strictObject({
  pre: v.optional(about(v.array(HookSchema), 'run in order before the backup; a failure stops the run (on-error hooks run)')),
  post: v.optional(about(v.array(HookSchema), 'run in order after the backup (MESHBACK_SNAPSHOT_ID is set)')),
  'on-error': v.optional(about(v.array(HookSchema), 'run when a phase failed (MESHBACK_ERROR holds its message)')),
});

export const DrillSchema = v.strictObject({
  schedule: v.optional(about(schedule(), 'when `meshback server` runs the drill (without one, only `meshback drill POLICY` runs it, e.g. from a CronJob)')),
  timezone: v.optional(timezone()),
  check: v.optional(about(HookSchema, 'run on the restored data after it was verified (MESHBACK_RESTORE_DIR, MESHBACK_SNAPSHOT_ID, MESHBACK_POLICY are set); a failure fails the drill')),
  target: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'the directory to restore into: absent or empty, not one of the sources (relative: to the policy file); default: a new directory under the state directory (--scratch-dir)')),
  'keep-on-failure': v.optional(about(v.boolean(), 'keep the restored data of a failed drill for a look (default false: it is always deleted)')),
});

export const PolicySchema = v.strictObject({
  sources: about(v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1)), 'the paths to back up (relative paths are relative to the policy file)'),
  repository: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'repository location (a path, file:, s3:); default: defaults.repository, then --repo / MESHBACK_REPO')),
  'password-file': v.optional(about(v.pipe(v.string(), v.minLength(1)), 'file holding the repository password; default: defaults.password-file, then --password-file / MESHBACK_PASSWORD')),
  schedule: v.optional(schedule()),
  timezone: v.optional(timezone()),
  retention: v.optional(RetentionSchema),
  prune: v.optional(
    about(
      v.union(
        [
          v.boolean(),
          v.strictObject({
            window: about(v.pipe(v.string(WINDOW_TEXT), v.check((s) => parseWindow(s) !== undefined, WINDOW_TEXT)), 'the daily maintenance window HH:MM-HH:MM in which prune runs (in the policy\'s timezone, else the host\'s)'),
          }),
        ],
        'must be true, false, or {window: HH:MM-HH:MM}',
      ),
      'prune after retention: true (after every run), false (never; the default), or {window: "01:00-05:00"}: only in that daily window (the server prunes at its start; meshback run prunes only inside it)',
    ),
  ),
  rpo: v.optional(about(duration(), 'recovery point objective: the newest snapshot should never be older')),
  tags: v.optional(about(v.record(v.pipe(v.string(), v.regex(/^[^=\s]+$/, 'must be a tag key without "=" or spaces'), v.check((k) => k !== 'policy', 'must not be "policy" (meshback sets policy=NAME itself)')), v.string()), 'tags of every snapshot (KEY: VALUE); policy=NAME is added')),
  exclude: v.optional(about(v.array(v.string()), 'exclude patterns, as --exclude (gitignore-style)')),
  hooks: v.optional(HooksSchema),
  presets: v.optional(about(v.array(PresetSchema), 'application-consistent backups: started in order after the pre hooks, finished in reverse order after the backup read (postgres, redis, fsfreeze, btrfs-snapshot; docs/design.md, "Presets")')),
  drill: v.optional(DrillSchema),
});

export const PolicyFileSchema = about(
  v.strictObject({
    version: about(v.literal(1), 'the version of the policy file format: 1'),
    defaults: v.optional(
      v.strictObject({
        repository: v.optional(v.pipe(v.string(), v.minLength(1))),
        'password-file': v.optional(v.pipe(v.string(), v.minLength(1))),
      }),
    ),
    policies: v.pipe(v.record(v.pipe(v.string(), v.regex(NAME, NAME_TEXT)), PolicySchema), v.check((r) => Object.keys(r).length > 0, 'is empty: name at least one policy')),
  }),
  'a meshback policy file (YAML): named backup policies',
);

export type PolicyFileInput = v.InferOutput<typeof PolicyFileSchema>;
export type PolicyInput = v.InferOutput<typeof PolicySchema>;
export type HookInput = ExecHookInput | HttpHookInput;
export { HOOK_TIMEOUT_DEFAULT, HTTP_HOOK_TIMEOUT_DEFAULT };

/** A policy's name (the API checks the names it is given with it). */
export { NAME as POLICY_NAME, NAME_TEXT as POLICY_NAME_TEXT };
