/**
 * bench/fault/report/pareto: the Pareto front of points whose every coordinate is a cost (lower
 * is better).
 *
 * A point *dominates* another when it is no worse in every coordinate and strictly better in at
 * least one. The front is the set of points no other point dominates. Two points equal in every
 * coordinate do not dominate each other, so both stay on the front (a tie). A point with a missing
 * coordinate (undefined or NaN) cannot be compared: it is neither on the front nor dominated, and
 * is listed as unranked; it does not dominate anything either.
 */

export interface ParetoPoint {
  id: string;
  /** costs, lower is better; undefined or NaN = not measured */
  values: readonly (number | undefined)[];
}

export interface ParetoResult {
  /** ids on the front, in input order */
  front: string[];
  /** id of each dominated point -> ids of the points that dominate it (input order) */
  dominated: Map<string, string[]>;
  /** ids with a missing coordinate, in input order */
  unranked: string[];
}

const complete = (v: readonly (number | undefined)[]): v is readonly number[] => v.every((x) => x !== undefined && !Number.isNaN(x));

/** Does `a` dominate `b` (both complete, same length, lower is better)? */
export function dominates(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) throw new RangeError(`dominates: ${a.length} coordinates against ${b.length}`);
  let better = false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]! > b[i]!) return false;
    if (a[i]! < b[i]!) better = true;
  }
  return better;
}

/** The Pareto front of `points` (see the module comment). Ids must be distinct. */
export function paretoFront(points: readonly ParetoPoint[]): ParetoResult {
  const ids = new Set<string>();
  for (const p of points) {
    if (ids.has(p.id)) throw new RangeError(`paretoFront: duplicate id ${JSON.stringify(p.id)}`);
    ids.add(p.id);
  }
  const ranked = points.filter((p): p is ParetoPoint & { values: readonly number[] } => complete(p.values));
  const front: string[] = [];
  const dominated = new Map<string, string[]>();
  for (const p of ranked) {
    const by = ranked.filter((q) => q !== p && dominates(q.values, p.values)).map((q) => q.id);
    if (by.length === 0) front.push(p.id);
    else dominated.set(p.id, by);
  }
  return { front, dominated, unranked: points.filter((p) => !complete(p.values)).map((p) => p.id) };
}
