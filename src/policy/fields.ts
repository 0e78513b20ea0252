/**
 * policy/fields: field schemas shared by the policy file's schema (schema.ts) and the presets'
 * (presets/*.ts), which schema.ts imports: kept apart so that neither imports the other.
 */
import { MeshbackError } from '../errors/index.ts';
import { v } from '../util/schema.ts';
import { parseDuration } from '../util/units.ts';

/** true when `s` is a duration of the project's grammar (longer than zero). */
export function isDuration(s: string): boolean {
  try {
    parseDuration(s, 'x');
    return true;
  } catch (err) {
    if (err instanceof MeshbackError) return false;
    throw err;
  }
}

const DURATION_TEXT = 'must be a duration such as 30s, 15m, 1h30m, 7d (units ms, s, m/min, h, d, w, mo, y; m is minutes)';

/** A duration of the project's grammar (src/util/units.ts), as text. */
export const durationField = () => v.pipe(v.string(DURATION_TEXT), v.check(isDuration, DURATION_TEXT));
