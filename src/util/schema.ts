/**
 * util/schema: the one way untrusted JSON is read (zod 4). A schema lives beside the type it
 * checks (the type is `z.infer` of it where that removes a copy); `checked()` runs it and turns
 * the first problem into one line that names the field, `field "time" must be an ISO date`, for
 * the caller to wrap in its own error class (IntegrityError for repository data, UsageError for
 * a user's file). `npm run schemas` exports the documented formats as JSON Schema (docs/schemas/).
 */
import { z } from 'zod';

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

const EXPECTED: Record<string, string> = { array: 'a list', object: 'an object', int: 'a whole number', boolean: 'true or false', null: 'null' };

const FORMATS: Record<string, string> = {
  datetime: 'an ISO date (e.g. 2026-11-22T10:00:00.000Z)',
  base64: 'base64',
  hex: 'hexadecimal',
};

/** What is wrong with one value, as the end of `field "x" ...`. */
function problem(i: z.core.$ZodIssue): string {
  // a schema may say it itself: { error: 'must be 64 hex digits' }
  if (i.message.startsWith('must ') || i.message.startsWith('is ')) return i.message;
  // a field that is absent (zod reports it as a wrong type, or as not one of the allowed values)
  if ((i.code === 'invalid_type' || i.code === 'invalid_value') && 'input' in i && i.input === undefined) return 'is missing';
  switch (i.code) {
    case 'invalid_type':
      return `must be ${EXPECTED[i.expected] ?? `a ${i.expected}`} (it is ${shown(i.input)})`;
    case 'invalid_value':
      return i.values.length === 1 ? `must be ${JSON.stringify(i.values[0])} (it is ${shown(i.input)})` : `must be one of ${i.values.map((v) => JSON.stringify(v)).join(', ')} (it is ${shown(i.input)})`;
    case 'invalid_format':
      return `must be ${FORMATS[i.format] ?? (i.format === 'regex' && 'pattern' in i ? `text matching ${String(i.pattern)}` : i.format)} (it is ${shown(i.input)})`;
    case 'too_small':
      return i.origin === 'array' || i.origin === 'string' ? `must have at least ${String(i.minimum)} ${i.origin === 'array' ? 'entries' : 'characters'}` : `must be ${i.inclusive === false ? 'more than' : 'at least'} ${String(i.minimum)} (it is ${shown(i.input)})`;
    case 'too_big':
      return i.origin === 'array' || i.origin === 'string' ? `must have at most ${String(i.maximum)} ${i.origin === 'array' ? 'entries' : 'characters'}` : `must be ${i.inclusive === false ? 'less than' : 'at most'} ${String(i.maximum)} (it is ${shown(i.input)})`;
    case 'not_multiple_of':
      return `must be a multiple of ${String(i.divisor)}`;
    case 'unrecognized_keys':
      return `has unknown field(s) ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    case 'invalid_union':
      return 'matches none of the allowed shapes';
    default:
      return i.message;
  }
}

/** One line for a failed parse: the first problem, and how many more there are. */
export function issueText(err: z.ZodError): string {
  const first = err.issues[0];
  if (first === undefined) return 'is not valid';
  const where = first.path.length === 0 ? 'the top level' : `field "${fieldPath(first.path)}"`;
  const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more problem${err.issues.length > 2 ? 's' : ''})` : '';
  return `${where} ${problem(first)}${more}`;
}

/**
 * `value` checked by `schema`, or the error `fail` makes from the one-line account of the first
 * problem (e.g. `(m) => new IntegrityError(\`snapshot 1a2b3c4d: ${m}: ...\`)`).
 */
export function checked<S extends z.ZodType>(schema: S, value: unknown, fail: (problem: string) => Error): z.output<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (!r.success) throw fail(issueText(r.error));
  return r.data;
}

/** JSON.parse that reports failure as `fail(one line)` instead of a SyntaxError. */
export function parseJson(text: string, fail: (problem: string) => Error): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw fail(`is not JSON (${(err instanceof Error ? err.message : String(err)).split('\n')[0]})`);
  }
}

/** An ISO-8601 date-time as `Date.prototype.toISOString` writes it (any offset accepted). */
export const isoDate = () => z.iso.datetime({ offset: true, error: 'must be an ISO date (e.g. 2026-11-22T10:00:00.000Z)' });

/** 64 lowercase hex digits: a blob, snapshot, pack or key id. */
export const hexId = () => z.string().regex(/^[0-9a-f]{64}$/, { error: 'must be 64 lowercase hex digits (an id)' });

export { z };
