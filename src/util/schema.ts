/**
 * util/schema: the one way untrusted JSON is read (valibot). A schema lives beside the type it
 * checks (the type is `v.InferOutput` of it where that removes a copy); `checked()` runs it and
 * turns the first problem into one line that names the field, `field "time" must be an ISO date`,
 * for the caller to wrap in its own error class (IntegrityError for repository data, UsageError
 * for a user's file). `npm run schemas` exports the documented formats as JSON Schema
 * (docs/schemas/).
 *
 * valibot rather than zod: it is one module of plain functions (importing it costs about 6 ms at
 * the start of every command; zod's module graph cost 60-90 ms and 10 MB; docs/design.md).
 */
import * as v from 'valibot';

/** A field path as people write it: `summary.files`, `nodes[3].content[0]`; `(top level)` for none. */
export function fieldPath(p: readonly PropertyKey[]): string {
  let s = '';
  for (const k of p) s += typeof k === 'number' ? `[${k}]` : s === '' ? String(k) : `.${String(k)}`;
  return s;
}

function shown(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'an object';
  if (typeof x === 'string') return x.length > 40 ? `${JSON.stringify(x.slice(0, 40))}...` : JSON.stringify(x);
  return String(x);
}

/** What a schema of this type wants, for `must be ...`. */
const EXPECTED: Record<string, string> = {
  array: 'a list',
  object: 'an object',
  loose_object: 'an object',
  strict_object: 'an object',
  object_with_rest: 'an object',
  record: 'an object',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  null: 'null',
};

const OBJECTS = new Set(['object', 'loose_object', 'strict_object', 'object_with_rest']);

export type Issue = v.BaseIssue<unknown>;

/** The allowed values of a literal or picklist issue, from valibot's `expected` (`"x"`, `("x" | "y")`). */
function allowed(expected: string | null): string[] {
  if (expected === null) return [];
  const inner = expected.startsWith('(') && expected.endsWith(')') ? expected.slice(1, -1) : expected;
  return inner.split(' | ');
}

/** What is wrong with one value, as the end of `field "x" ...`. */
function problem(i: Issue): string {
  // a field that is absent (an object reports a missing key with the input undefined)
  if (i.input === undefined && !i.message.startsWith('is ')) return 'is missing';
  // a schema may say it itself: v.regex(..., 'must be 64 hex digits'), v.check(..., 'is missing (...)')
  if (i.message.startsWith('must ')) return `${i.message} (it is ${shown(i.input)})`;
  if (i.message.startsWith('is ')) return i.message;
  switch (i.type) {
    case 'literal':
    case 'picklist':
    case 'enum': {
      const vals = allowed(i.expected);
      return vals.length === 1 ? `must be ${vals[0]!} (it is ${shown(i.input)})` : `must be one of ${vals.join(', ')} (it is ${shown(i.input)})`;
    }
    case 'integer':
    case 'safe_integer':
      return `must be a whole number (it is ${shown(i.input)})`;
    case 'min_value':
      return `must be at least ${String(i.requirement)} (it is ${shown(i.input)})`;
    case 'max_value':
      return `must be at most ${String(i.requirement)} (it is ${shown(i.input)})`;
    case 'gt_value':
      return `must be more than ${String(i.requirement)} (it is ${shown(i.input)})`;
    case 'lt_value':
      return `must be less than ${String(i.requirement)} (it is ${shown(i.input)})`;
    case 'min_length':
      return `must have at least ${String(i.requirement)} ${Array.isArray(i.input) ? 'entries' : 'characters'}`;
    case 'max_length':
      return `must have at most ${String(i.requirement)} ${Array.isArray(i.input) ? 'entries' : 'characters'}`;
    case 'multiple_of':
      return `must be a multiple of ${String(i.requirement)}`;
    case 'regex':
      return `must be text matching ${String(i.requirement)} (it is ${shown(i.input)})`;
    case 'union':
    case 'variant':
      return 'matches none of the allowed shapes';
    default: {
      const want = i.kind === 'schema' ? EXPECTED[i.type] : undefined;
      return want !== undefined ? `must be ${want} (it is ${shown(i.input)})` : i.message;
    }
  }
}

function keys(path: Issue['path']): PropertyKey[] {
  return (path ?? []).map((p) => p.key as PropertyKey);
}

/** The first problem of a failed parse: where (a field path, empty for the top level), what (`must be ...`), and how many more there are. */
export function firstProblem(issues: readonly Issue[] | undefined): { path: PropertyKey[]; text: string; more: number } {
  const first = issues?.[0];
  if (issues === undefined || first === undefined) return { path: [], text: 'is not valid', more: 0 };
  let path = keys(first.path);
  let text: string;
  let more = issues.length - 1;
  const last = first.path?.at(-1);
  if (first.input === undefined && OBJECTS.has(first.type) && last?.origin === 'key' && Array.isArray(last.input)) {
    // valibot takes a list for an object and finds its fields missing: say what it is instead
    path = path.slice(0, -1);
    text = 'must be an object (it is a list)';
    more = issues.filter((i) => i.path?.at(-1)?.input !== last.input).length;
  } else if (first.type === 'strict_object' && first.expected === 'never' && last?.origin === 'key') text = 'is not a known field: check its spelling';
  else text = problem(first);
  return { path, text, more };
}

/** One line for a failed parse: the first problem, and how many more there are. */
export function issueText(issues: readonly Issue[] | undefined): string {
  const { path, text, more } = firstProblem(issues);
  const where = path.length === 0 ? 'the top level' : `field "${fieldPath(path)}"`;
  return `${where} ${text}${more > 0 ? ` (and ${more} more problem${more > 1 ? 's' : ''})` : ''}`;
}

// one problem per field: a value's pipe stops at its first failing check
const CONFIG = { abortPipeEarly: true } as const;

/** valibot's safeParse with the configuration checked() uses (for callers that want the issues). */
export function safeParse<S extends v.GenericSchema>(schema: S, value: unknown): v.SafeParseResult<S> {
  return v.safeParse(schema, value, CONFIG);
}

/**
 * `value` checked by `schema`, or the error `fail` makes from the one-line account of the first
 * problem (e.g. `(m) => new IntegrityError(\`snapshot 1a2b3c4d: ${m}: ...\`)`).
 */
export function checked<S extends v.GenericSchema>(schema: S, value: unknown, fail: (problem: string) => Error): v.InferOutput<S> {
  const r = v.safeParse(schema, value, CONFIG);
  if (!r.success) throw fail(issueText(r.issues));
  return r.output;
}

/** JSON.parse that reports failure as `fail(one line)` instead of a SyntaxError. */
export function parseJson(text: string, fail: (problem: string) => Error): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw fail(`is not JSON (${(err instanceof Error ? err.message : String(err)).split('\n')[0]})`);
  }
}

// RFC 3339 as Date.prototype.toISOString writes it: a real calendar date, 'T', seconds, optional
// fraction, 'Z' or a +hh:mm offset (what zod's iso.datetime({ offset: true }) accepted)
const ISO_DATE = new RegExp(
  '^(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|(?:02)-(?:0[1-9]|1\\d|2[0-8])))' +
    'T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d+)?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$',
);
const ISO_DATE_TEXT = 'must be an ISO date (e.g. 2026-11-22T10:00:00.000Z)';

/** An ISO-8601 date-time as `Date.prototype.toISOString` writes it (any offset accepted). */
export const isoDate = () => v.pipe(v.string(ISO_DATE_TEXT), v.regex(ISO_DATE, ISO_DATE_TEXT), v.metadata({ format: 'date-time' }));

/** 64 lowercase hex digits: a blob, snapshot, pack or key id. */
export const HEX_ID = /^[0-9a-f]{64}$/;
export const hexId = () => v.pipe(v.string(), v.regex(HEX_ID, 'must be 64 lowercase hex digits (an id)'));

/** A whole number (a safe integer, as JSON numbers go), at least `min` when given. */
export const int = (min?: number) => (min === undefined ? v.pipe(v.number(), v.safeInteger()) : v.pipe(v.number(), v.safeInteger(), v.minValue(min)));

/** `schema` with a description (the JSON Schema in docs/schemas/ shows it). */
export const about = <S extends v.GenericSchema>(schema: S, description: string) => v.pipe(schema, v.description(description));

export { v };
