/**
 * Exclude patterns. A pattern without '/' matches an entry's name at any depth; a pattern
 * with '/' matches the entry's absolute path. '*' matches within one path component, '**'
 * across components, '?' one character, and [abc] a character class.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          // '**/' matches zero or more whole directories
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const j = glob.indexOf(']', i + 1);
      if (j < 0) re += '\\[';
      else {
        re += '[' + glob.slice(i + 1, j).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']';
        i = j;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$', 's');
}

export class Excluder {
  private readonly byName: RegExp[] = [];
  private readonly byPath: RegExp[] = [];
  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      const trimmed = p.endsWith('/') && p.length > 1 ? p.slice(0, -1) : p;
      if (trimmed.includes('/')) this.byPath.push(globToRegExp(trimmed));
      else this.byName.push(globToRegExp(trimmed));
    }
  }
  get empty(): boolean {
    return this.byName.length === 0 && this.byPath.length === 0;
  }
  excluded(absPath: string, name: string): boolean {
    for (const r of this.byName) if (r.test(name)) return true;
    for (const r of this.byPath) if (r.test(absPath)) return true;
    return false;
  }
}
