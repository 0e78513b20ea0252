/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests of what
 * meshback exposes, writes for node_exporter and pushes: every line a `# HELP`, a `# TYPE` or a
 * sample of a family declared before it, names and labels of the allowed characters, values
 * numbers. Anything else throws, naming the line.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface Exposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: Sample[];
  /** the value of the one sample `name` with exactly these labels, or undefined */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(?:,|$)/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  if (text !== '' && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  for (const [i, line] of text.split('\n').entries()) {
    const at = `line ${i + 1} (${JSON.stringify(line)})`;
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line)) !== null) {
      if (help.has(m[1]!)) throw new Error(`${at}: a second HELP for ${m[1]}`);
      help.set(m[1]!, m[2]!);
    } else if ((m = new RegExp(`^# TYPE (${NAME}) (\\w+)$`).exec(line)) !== null) {
      if (!TYPES.has(m[2]!)) throw new Error(`${at}: unknown type ${m[2]}`);
      if (types.has(m[1]!)) throw new Error(`${at}: a second TYPE for ${m[1]}`);
      types.set(m[1]!, m[2]!);
    } else if (line.startsWith('#')) {
      continue; // a comment
    } else if ((m = SAMPLE.exec(line)) !== null) {
      const name = m[1]!;
      const family = [name, name.replace(/_(bucket|sum|count|total|created)$/, '')].find((n) => types.has(n));
      if (family === undefined) throw new Error(`${at}: a sample of ${name} before its TYPE`);
      const labels: Record<string, string> = {};
      let rest = m[2] ?? '';
      for (let n = 0; rest !== '' && n < 100; n++) {
        const l = LABEL.exec(rest);
        if (l === null) throw new Error(`${at}: bad labels at ${JSON.stringify(rest)}`);
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
        rest = rest.slice(l[0].length);
      }
      // as Prometheus reads it (Go's strconv.ParseFloat: Inf and NaN in any case; prom-client writes "Nan")
      const raw = m[3]!;
      const special = /^([+-]?)(inf|infinity)$/i.exec(raw);
      const value = special !== null ? (special[1] === '-' ? -Infinity : Infinity) : /^nan$/i.test(raw) ? NaN : /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw) ? Number(raw) : undefined;
      if (value === undefined) throw new Error(`${at}: the value ${raw} is not a number`);
      samples.push({ name, labels, value });
    } else throw new Error(`${at}: neither a comment nor a sample`);
  }
  const same = (a: Record<string, string>, b: Record<string, string>): boolean => Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  return {
    types,
    help,
    samples,
    value: (name, labels = {}) => {
      const hits = samples.filter((s) => s.name === name && same(s.labels, labels));
      if (hits.length > 1) throw new Error(`${hits.length} samples of ${name}${JSON.stringify(labels)}`);
      return hits[0]?.value;
    },
  };
}
