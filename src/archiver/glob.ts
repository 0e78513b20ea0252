/**
 * Exclude patterns (`backup --exclude PATTERN`, `--exclude-file FILE`), gitignore-style, matched
 * with picomatch (compiled once per pattern into one RegExp; the archiver tests every directory
 * entry). The grammar, as documented in the README and docs/design.md:
 *
 * - A pattern without '/' (a trailing '/' does not count) matches an entry's name at any depth:
 *   `*.log`, `cache`, `.git`.
 * - A pattern with a '/' is anchored: it matches the entry's path below the backed-up PATH
 *   (`conf/*.tmp` or `/conf/*.tmp`, for PATH/conf/x.tmp), or its absolute path
 *   (`/var/lib/data/cache/**`, as earlier meshback releases and restic read it).
 * - `*` matches any run of characters except '/', dotfiles included (`*.log` matches `.log`, `*`
 *   matches `.env`); `**` as a whole path component matches zero or more components; `?` one
 *   character except '/'; `[abc]`, `[a-z]`, `[!a]` or `[^a]`, `[[:digit:]]`; braces `{a,b}` and
 *   `{1..3}`; `\` escapes the next character (`\*`, `\!`, `\\`). `( ) | + @ $ ^` are literal.
 * - A trailing '/' matches directories only (`logs/`).
 * - A leading '!' re-includes what an earlier pattern excluded: patterns are read in order and the
 *   last one that matches decides. As in git, an entry inside an excluded directory cannot be
 *   re-included (the directory is never entered).
 * - Names that are not valid UTF-8 are matched in their UTF-8 decoding, with each invalid byte
 *   replaced by U+FFFD: `*` and `?` match them, a literal pattern cannot name those bytes.
 */
import picomatch from 'picomatch';
import { UsageError } from '../errors/index.ts';

// dot: '*' matches dotfiles (an exclude must never skip them silently); nonegate: the leading '!'
// is ours (re-include); noextglob: '@(a|b)' is not special; posix: [[:alpha:]]; s: '*' and '?'
// match a newline in a name too
const OPTIONS: picomatch.PicomatchOptions = { dot: true, nonegate: true, noextglob: true, posix: true, flags: 's' };

interface Rule {
  /** the pattern as given, for messages */
  pattern: string;
  re: RegExp;
  negate: boolean;
  dirOnly: boolean;
  /** matched against the path (below PATH, or absolute) instead of the name */
  anchored: boolean;
}

/**
 * Escapes what picomatch would read as regex syntax ( ( ) | + @ $ and ^ outside a class) so that
 * those characters are literal, as gitignore users expect; escaped characters and `[^` stay.
 */
function literalize(glob: string): string {
  return glob.replace(/\\.|\[\^|[()|+@$^]/gs, (m) => (m.length === 2 ? m : `\\${m}`));
}

/** Compiles one pattern; throws UsageError for a pattern that cannot mean anything. */
export function compilePattern(pattern: string): Rule {
  let p = pattern;
  const negate = p.startsWith('!');
  if (negate) p = p.slice(1);
  const dirOnly = p.length > 1 && p.endsWith('/') && !p.endsWith('\\/');
  if (dirOnly) p = p.replace(/\/+$/, '');
  const anchored = p.includes('/');
  if (anchored) p = p.replace(/^\/+/, '');
  if (p === '') throw new UsageError(`exclude pattern ${JSON.stringify(pattern)} is empty: give a name or path pattern such as '*.log' or 'cache/'`);
  if (/(^|[^\\])(\\\\)*\\$/.test(p)) throw new UsageError(`exclude pattern ${JSON.stringify(pattern)} ends with a lone '\\': escape it as '\\\\' or remove it`);
  let re: RegExp;
  try {
    re = picomatch.makeRe(literalize(p), OPTIONS);
  } catch (err) {
    throw new UsageError(`exclude pattern ${JSON.stringify(pattern)} is not a valid glob (${err instanceof Error ? err.message : String(err)}): fix it`);
  }
  return { pattern, re, negate, dirOnly, anchored };
}

export class Excluder {
  private readonly rules: Rule[];
  /** whether any pattern looks at paths (else callers need not build them) */
  readonly needsPath: boolean;

  constructor(patterns: readonly string[]) {
    this.rules = patterns.map(compilePattern);
    this.needsPath = this.rules.some((r) => r.anchored);
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /**
   * Whether an entry is left out. `name` is its name; `abs` its absolute path and `rel` its path
   * below the backed-up PATH (without a leading '/'); both are needed only when `needsPath`.
   */
  excluded(name: string, isDir: boolean, abs = '', rel = ''): boolean {
    const rules = this.rules;
    let absTrimmed: string | undefined;
    for (let i = rules.length - 1; i >= 0; i--) {
      const r = rules[i]!;
      if (r.dirOnly && !isDir) continue;
      let hit: boolean;
      if (!r.anchored) hit = r.re.test(name);
      else {
        if (absTrimmed === undefined) {
          let k = 0;
          while (abs.charCodeAt(k) === 0x2f) k++;
          absTrimmed = abs.slice(k);
        }
        hit = r.re.test(rel) || (absTrimmed !== rel && r.re.test(absTrimmed));
      }
      if (hit) return !r.negate;
    }
    return false;
  }
}

/**
 * Patterns of an exclude file: one per line; blank lines and lines starting with '#' are skipped
 * (`\#` for a name starting with '#'); trailing spaces are dropped unless escaped with '\'.
 */
export function parseExcludeFile(text: string): string[] {
  const out: string[] = [];
  for (let line of text.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    line = line.replace(/(?<!\\) +$/, '');
    if (line === '' || line.startsWith('#')) continue;
    out.push(line);
  }
  return out;
}
