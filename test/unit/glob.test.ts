import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Excluder, parseExcludeFile } from '../../src/archiver/glob.ts';
import { UsageError } from '../../src/errors/index.ts';

/**
 * Whether `abs` (an absolute path below the backed-up PATH `root`) is excluded, with the name,
 * absolute path and path below PATH built the way the archiver builds them.
 */
function ex(x: Excluder, abs: string, opts: { root?: string; dir?: boolean } = {}): boolean {
  const root = opts.root ?? '/';
  assert.ok(abs.startsWith(root === '/' ? '/' : `${root}/`), `${abs} lies below ${root}`);
  const name = abs.slice(abs.lastIndexOf('/') + 1);
  const rel = abs.slice(root === '/' ? 1 : root.length + 1);
  return x.excluded(name, opts.dir ?? false, abs, rel);
}

describe('Excluder: names (patterns without a slash)', () => {
  it("'*.log' matches names at any depth, and only whole names", () => {
    const x = new Excluder(['*.log']);
    assert.equal(ex(x, '/a.log'), true);
    assert.equal(ex(x, '/var/lib/envoy/access.log'), true);
    assert.equal(ex(x, '/x/a.log.1'), false);
    assert.equal(ex(x, '/x/alog'), false, "'.' is literal");
    assert.equal(ex(x, '/x.log/y'), false, 'a parent name does not count');
  });

  it('dotfiles are matched by * and ? (an exclude never skips them silently)', () => {
    assert.equal(ex(new Excluder(['*.log']), '/x/.log'), true);
    assert.equal(ex(new Excluder(['*.log']), '/x/.hidden.log'), true);
    assert.equal(ex(new Excluder(['*']), '/x/.env'), true);
    assert.equal(ex(new Excluder(['?git']), '/x/.git', { dir: true }), true);
    assert.equal(ex(new Excluder(['**/*.key']), '/x/.ssh/.id.key'), true);
    assert.equal(ex(new Excluder(['.*']), '/x/.cache', { dir: true }), true);
    assert.equal(ex(new Excluder(['.*']), '/x/cache', { dir: true }), false);
  });

  it("'?' matches exactly one character, never '/'", () => {
    const x = new Excluder(['file?.txt', '/d/?/e']);
    assert.equal(ex(x, '/q/file1.txt'), true);
    assert.equal(ex(x, '/q/fileé.txt'), true, 'one character, not one byte');
    assert.equal(ex(x, '/q/file.txt'), false);
    assert.equal(ex(x, '/q/file10.txt'), false);
    assert.equal(ex(x, '/d/x/e'), true);
    assert.equal(x.excluded('e', false, '/d//e', 'd//e'), false);
  });

  it("character classes: [abc], ranges, [!a] and [^a] negation, POSIX classes", () => {
    const x = new Excluder(['[abc].txt', 'v[0-9]', 'n[!xy]', 'm[^xy]', 'p[[:digit:]]']);
    assert.equal(ex(x, '/a.txt'), true);
    assert.equal(ex(x, '/c.txt'), true);
    assert.equal(ex(x, '/d.txt'), false);
    assert.equal(ex(x, '/v7'), true);
    assert.equal(ex(x, '/vx'), false);
    assert.equal(ex(x, '/v10'), false);
    assert.equal(ex(x, '/nz'), true);
    assert.equal(ex(x, '/nx'), false);
    assert.equal(ex(x, '/ny'), false);
    assert.equal(ex(x, '/mz'), true);
    assert.equal(ex(x, '/mx'), false);
    assert.equal(ex(x, '/p5'), true);
    assert.equal(ex(x, '/pq'), false);
    assert.equal(ex(new Excluder(['a[()]b']), '/a(b'), true, 'parentheses in a class');
  });

  it('braces {a,b} and ranges {1..3}', () => {
    const x = new Excluder(['*.{tmp,swp}', 'core.{1..3}', '{,.}cache']);
    assert.equal(ex(x, '/a/x.tmp'), true);
    assert.equal(ex(x, '/a/.x.swp'), true);
    assert.equal(ex(x, '/a/x.txt'), false);
    assert.equal(ex(x, '/a/core.2'), true);
    assert.equal(ex(x, '/a/core.4'), false);
    assert.equal(ex(x, '/a/cache'), true);
    assert.equal(ex(x, '/a/.cache'), true);
    assert.equal(ex(x, '/a/xcache'), false);
  });

  it('backslash escapes the next character', () => {
    assert.equal(ex(new Excluder(['\\*']), '/a/*'), true);
    assert.equal(ex(new Excluder(['\\*']), '/a/x'), false);
    assert.equal(ex(new Excluder(['a\\?']), '/a/a?'), true);
    assert.equal(ex(new Excluder(['a\\?']), '/a/ab'), false);
    assert.equal(ex(new Excluder(['\\[x]']), '/a/[x]'), true);
    assert.equal(ex(new Excluder(['\\[x]']), '/a/x'), false);
    assert.equal(ex(new Excluder(['\\{a,b}']), '/a/{a,b}'), true);
    assert.equal(ex(new Excluder(['\\{a,b}']), '/a/a'), false);
    assert.equal(ex(new Excluder(['\\!keep']), '/a/!keep'), true, "'\\!' is a literal '!', not a re-include");
    assert.equal(ex(new Excluder(['back\\\\slash']), '/a/back\\slash'), true);
  });

  it('regex metacharacters and extglob-looking text are literal', () => {
    const x = new Excluder(['a+b(1).$x', 'file (*).txt', '@(a|b)', 'x^y']);
    assert.equal(ex(x, '/q/a+b(1).$x'), true);
    assert.equal(ex(x, '/q/aab(1)x$x'), false);
    assert.equal(ex(x, '/q/file (2).txt'), true);
    assert.equal(ex(x, '/q/@(a|b)'), true);
    assert.equal(ex(x, '/q/a'), false, 'no extglob');
    assert.equal(ex(x, '/q/x^y'), true);
    assert.equal(ex(new Excluder(['[unclosed']), '/q/[unclosed'), true);
  });

  it('a trailing slash matches directories only', () => {
    const x = new Excluder(['node_modules/']);
    assert.equal(ex(x, '/p/node_modules', { dir: true }), true);
    assert.equal(ex(x, '/p/node_modules', { dir: false }), false);
    assert.equal(ex(new Excluder(['conf/cache/']), '/v/conf/cache', { root: '/v', dir: true }), true);
    assert.equal(ex(new Excluder(['conf/cache/']), '/v/conf/cache', { root: '/v', dir: false }), false);
  });

  it('names with a newline and names that are not valid UTF-8 (decoded with U+FFFD)', () => {
    assert.equal(ex(new Excluder(['*']), '/a/\nx'), true);
    assert.equal(ex(new Excluder(['a*b']), '/a/a\nb'), true);
    // the archiver decodes a name's bytes as UTF-8: each invalid byte becomes U+FFFD
    const raw = Buffer.from([0x66, 0xff, 0x2e, 0x6c, 0x6f, 0x67]); // "f\xff.log"
    const name = raw.toString('utf8');
    assert.equal(name, 'f\uFFFD.log');
    assert.equal(new Excluder(['*.log']).excluded(name, false, `/d/${name}`, name), true);
    assert.equal(new Excluder(['f?.log']).excluded(name, false, `/d/${name}`, name), true);
    assert.equal(new Excluder(['f.log']).excluded(name, false, `/d/${name}`, name), false);
    assert.equal(new Excluder(['/d/f?.log']).excluded(name, false, `/d/${name}`, name), true);
  });
});

describe('Excluder: paths (patterns with a slash)', () => {
  it("'/abs/path/**' matches everything below that absolute path", () => {
    const x = new Excluder(['/abs/path/**']);
    assert.equal(ex(x, '/abs/path/a'), true);
    assert.equal(ex(x, '/abs/path/a/b/c.txt'), true);
    assert.equal(ex(x, '/abs/path/.hidden'), true, 'dotfiles too');
    assert.equal(ex(x, '/abs/pathology/a'), false);
    assert.equal(ex(x, '/other/abs/path/a'), false, 'anchored: not at any depth');
    assert.equal(ex(x, '/abs/other/a'), false);
  });

  it('is anchored to the backed-up PATH too: conf/*.tmp and /conf/*.tmp mean PATH/conf/*.tmp', () => {
    for (const p of ['conf/*.tmp', '/conf/*.tmp']) {
      const x = new Excluder([p]);
      assert.equal(ex(x, '/srv/vol/conf/a.tmp', { root: '/srv/vol' }), true, p);
      assert.equal(ex(x, '/srv/vol/conf/.a.tmp', { root: '/srv/vol' }), true, p);
      assert.equal(ex(x, '/srv/vol/x/conf/a.tmp', { root: '/srv/vol' }), false, `${p}: not at any depth`);
      assert.equal(ex(x, '/srv/vol/conf/sub/a.tmp', { root: '/srv/vol' }), false, `${p}: '*' does not cross '/'`);
    }
    // the absolute spelling keeps working
    assert.equal(ex(new Excluder(['/srv/vol/conf/*.tmp']), '/srv/vol/conf/a.tmp', { root: '/srv/vol' }), true);
    // a backup of '/': both readings agree (the archiver's paths start with '//' there)
    const x = new Excluder(['/etc/*.conf']);
    assert.equal(x.excluded('a.conf', false, '//etc/a.conf', 'etc/a.conf'), true);
    assert.equal(ex(x, '/etc/a.conf'), true);
  });

  it("'**/cache/*' matches direct children of any directory named cache", () => {
    const x = new Excluder(['**/cache/*']);
    assert.equal(ex(x, '/var/cache/apt'), true);
    assert.equal(ex(x, '/cache/x'), true);
    assert.equal(ex(x, '/a/b/c/cache/x'), true);
    assert.equal(ex(x, '/var/cache/apt/archives'), false, "'*' does not cross '/'");
    assert.equal(ex(x, '/var/cache'), false);
    assert.equal(ex(x, '/var/mycache/x'), false);
  });

  it("'**' in the middle matches zero or more directories", () => {
    const x = new Excluder(['/srv/**/tmp']);
    assert.equal(ex(x, '/srv/tmp'), true);
    assert.equal(ex(x, '/srv/a/b/tmp'), true);
    assert.equal(ex(x, '/srv/.a/tmp'), true, "'**' crosses dot directories");
    assert.equal(ex(x, '/srv/a/tmpx'), false);
  });
});

describe('Excluder: re-include with a leading !', () => {
  it('the last matching pattern wins, in order', () => {
    const x = new Excluder(['*.log', '!important.log']);
    assert.equal(ex(x, '/v/a.log'), true);
    assert.equal(ex(x, '/v/important.log'), false);
    assert.equal(ex(x, '/v/x.txt'), false);
    // the other order: the exclude comes last and wins
    const y = new Excluder(['!important.log', '*.log']);
    assert.equal(ex(y, '/v/important.log'), true);
  });

  it('re-includes by path, and excludes again after that', () => {
    const x = new Excluder(['*.tmp', '!/v/keep/*.tmp', '/v/keep/drop.tmp']);
    assert.equal(ex(x, '/v/a.tmp', { root: '/v' }), true);
    assert.equal(ex(x, '/v/keep/a.tmp', { root: '/v' }), false);
    assert.equal(ex(x, '/v/keep/drop.tmp', { root: '/v' }), true);
  });

  it('a re-include of a directory-only pattern looks at directories only', () => {
    const x = new Excluder(['build*', '!build/']);
    assert.equal(ex(x, '/v/build', { dir: true }), false);
    assert.equal(ex(x, '/v/build', { dir: false }), true);
    assert.equal(ex(x, '/v/build.log'), true);
  });
});

describe('Excluder: bad patterns and exclude files', () => {
  it('refuses empty patterns and a lone trailing backslash with a UsageError', () => {
    for (const p of ['', '!', '/', 'a\\', '!x\\\\\\']) {
      assert.throws(() => new Excluder([p]), (err: unknown) => err instanceof UsageError && err.code === 'USAGE' && !err.message.includes('\n') && err.message.includes(JSON.stringify(p)), JSON.stringify(p));
    }
    assert.doesNotThrow(() => new Excluder(['a\\\\']));
  });

  it('an empty Excluder excludes nothing and needs no paths', () => {
    const x = new Excluder([]);
    assert.equal(x.empty, true);
    assert.equal(ex(x, '/a'), false);
    assert.equal(new Excluder(['*']).empty, false);
    assert.equal(new Excluder(['*.log', 'cache/']).needsPath, false);
    assert.equal(new Excluder(['*.log', 'a/b']).needsPath, true);
  });

  it('parseExcludeFile skips blank lines and comments, keeps order and escaped spaces', () => {
    const text = '# caches\n*.tmp\r\n\n   \n\\#notes\n!keep.tmp\ntrailing   \nspace\\ \n';
    assert.deepEqual(parseExcludeFile(text), ['*.tmp', '\\#notes', '!keep.tmp', 'trailing', 'space\\ ']);
    const x = new Excluder(parseExcludeFile(text));
    assert.equal(ex(x, '/a/#notes'), true);
    assert.equal(ex(x, '/a/keep.tmp'), false);
    assert.equal(ex(x, '/a/space '), true);
    assert.equal(ex(x, '/a/space'), false);
  });
});
