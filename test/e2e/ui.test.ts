/**
 * End-to-end: the web dashboard in a real browser (Debian's chromium, headless, driven by
 * playwright-core) against a real `meshback server` (with a token) over a real repository whose
 * snapshots bin/meshback made (policy `orders` run three times with different changes, `cache`
 * once), and a real `meshback ui --repo` over the same repository. Checks: the page loads with no
 * console error and no request leaving 127.0.0.1; the token asked for on 401; the overview's RPO
 * colours; one chart point per snapshot carrying its real bytesAdded; the diff drill-down lists the
 * added file; a restore started from the page by keyboard alone (Tab to the tabs, arrows, Enter;
 * Tab to the restore button, Enter; the target typed twice) completes, and the restored tree
 * equals the source (lab/gen/compare.ts); a non-empty target refused with 409; the Advisor panel
 * shows each policy's advice and open anomalies (/v1/advice). Skipped when chromium is missing.
 * MESHBACK_UI_SCREENSHOTS=1 also writes docs/ui/*.png.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { BIN, ROOT, mb, rmrf, tmpdir } from '../helpers/cli.ts';
import { liveServers, startServer } from '../helpers/server.ts';
import { compareTrees } from '../../lab/gen/compare.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = process.env['MESHBACK_UI_SCREENSHOTS'] === '1' ? path.join(ROOT, 'docs/ui') : undefined;
const skip = existsSync(CHROMIUM) ? false : `chromium is not installed (${CHROMIUM}): apt-get install -y chromium (.ci/run does)`;

interface Snap {
  id: string;
  time: string;
  tags: string[];
  summary: { bytesAdded: number };
}

/** A page of the dashboard with what it logged and asked for. */
async function openPage(browser: Browser, url: string): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => {
    // Chrome logs every 4xx answer as a failed resource: a 401 is how the page learns it needs the
    // token, a 404 of /v1/advice or /v1/anomalies how it learns the server has no advisor
    const expected = /status of 401/.test(m.text()) || (/status of 404/.test(m.text()) && /\/v1\/(advice|anomalies)$/.test(m.location().url));
    if (m.type() === 'error' && !expected) errors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(url);
  return { page, errors, requests };
}

/** the page's document, as the functions run in the page see it (this file is typed without the DOM's types) */
type PageDoc = { activeElement: { id: string; className: string; closest(sel: string): { getAttribute(name: string): string | null } | null } | null };

const local = (u: string): boolean => u.startsWith('http://127.0.0.1:') || u.startsWith('data:') || u.startsWith('blob:');

describe('the web dashboard in chromium', { skip, timeout: 240_000 }, () => {
  let base: string;
  let repo: string;
  let data: string;
  let env: Record<string, string>;
  let url: string;
  let token: string;
  let browser: Browser;
  let orders: Snap[];
  let server: ReturnType<typeof startServer>;

  before(async () => {
    base = tmpdir('ui');
    repo = path.join(base, 'repo');
    data = path.join(base, 'data');
    await fsp.mkdir(path.join(data, 'db'), { recursive: true });
    await fsp.mkdir(path.join(base, 'cachedata'));
    await fsp.writeFile(path.join(base, 'cachedata', 'c.bin'), 'cache\n');
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    token = 'ui-test-token-0123456789abcdef';
    await fsp.writeFile(path.join(base, 'token'), token + '\n', { mode: 0o600 });
    await fsp.mkdir(path.join(base, 'reports'));
    await fsp.writeFile(path.join(base, 'reports', 'fault-2026-12-06.json'), '{"scenarios":[]}\n');
    await fsp.writeFile(path.join(base, 'reports', 'fault-2026-12-06.html'), '<!doctype html><title>report</title><p>report</p>\n');
    const config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults:
  repository: ./repo
  password-file: ./pw
policies:
  orders:
    sources: [data]
    rpo: 1h
  cache:
    sources: [cachedata]
    rpo: 1s
`,
    );
    const init = await mb(['init', '--repo', repo, '--password-file', path.join(base, 'pw')]);
    assert.equal(init.code, 0, init.stderr);
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    // three runs of orders, each adding a different amount of new data (bytesAdded and durations differ)
    const rnd = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) >> 3)) & 255));
    for (const [i, size] of [200_000, 30_000, 90_000].entries()) {
      await fsp.writeFile(path.join(data, 'db', `part-${i}.dat`), rnd(size, i + 1));
      if (i === 2) await fsp.writeFile(path.join(data, 'new-file.txt'), 'added before the third backup\n');
      const r = await mb(['run', 'orders', '--config', config], { env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
    }
    const c = await mb(['run', 'cache', '--config', config], { env, timeoutMs: 60_000 });
    assert.equal(c.code, 0, c.stderr);
    const list = await mb(['snapshots', '--json', '--repo', repo, '--password-file', path.join(base, 'pw')]);
    // newest first, as the page lists them
    orders = (JSON.parse(list.stdout) as Snap[]).filter((s) => s.tags.includes('policy=orders')).sort((a, b) => (a.time < b.time ? 1 : -1));
    assert.equal(orders.length, 3);
    server = startServer(['--config', config, '--state-dir', path.join(base, 'state'), '--token-file', path.join(base, 'token'), '--reports', path.join(base, 'reports')], env, 200_000);
    await server.waitFor((evs) => evs.some((e) => e.event === 'start'));
    url = (server.events.find((e) => e.event === 'start') as unknown as { api: string }).api;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking'] });
  });

  after(async () => {
    await browser?.close();
    for (const s of liveServers) s.kill('SIGKILL');
    await rmrf(base);
  });

  test('the page asks for the token, loads with no console error and no request beyond 127.0.0.1; the overview colours each policy by its RPO', async () => {
    const { page, errors, requests } = await openPage(browser, `${url}/`);
    await page.locator('#token-dialog[open]').waitFor({ timeout: 10_000 });
    await page.fill('#token-input', token);
    await page.keyboard.press('Enter');
    await page.locator('body[data-loaded=true]').waitFor({ timeout: 20_000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('meshback-token')), token);
    assert.equal(await page.getAttribute('tr[data-group=orders]', 'data-rpo'), 'green', 'orders was backed up just now, RPO 1h');
    assert.equal(await page.getAttribute('tr[data-group=cache]', 'data-rpo'), 'red', 'the backup of cache is older than its RPO of 1 s');
    assert.match((await page.textContent('tr[data-group=orders] .badge')) ?? '', /green/);
    if (SHOTS !== undefined) await shoot(page);
    assert.deepEqual(errors, []);
    assert.deepEqual(requests.filter((u) => !local(u)), []);
    assert.ok(requests.some((u) => u.endsWith('/ui/chart.js')));
    await page.close();
  });

  test('the charts have one point per snapshot with its real bytesAdded, and aria labels', async () => {
    const { page } = await openPage(browser, `${url}/#charts`);
    await page.evaluate((t) => sessionStorage.setItem('meshback-token', t), token);
    await page.reload();
    await page.locator('body[data-loaded=true]').waitFor({ timeout: 20_000 });
    const points = await page.$$eval('section.chart-group[data-group=orders] svg.bytes-added .point', (els) => els.map((e) => ({ id: e.getAttribute('data-snapshot'), bytes: Number(e.getAttribute('data-bytes-added')), title: e.querySelector('title')?.textContent })));
    assert.equal(points.length, orders.length);
    const want = new Map(orders.map((s) => [s.id, s.summary.bytesAdded]));
    for (const p of points) assert.equal(p.bytes, want.get(p.id!), `point of ${p.id}`);
    assert.equal(new Set(points.map((p) => p.bytes)).size, 3, 'the three backups added different amounts');
    assert.equal(await page.locator('section.chart-group[data-group=orders] svg.duration .point').count(), 3);
    assert.equal(await page.locator('section.chart-group[data-group=orders] svg.change-rate .point').count(), 2, 'a rate between each two backups');
    assert.match((await page.getAttribute('section.chart-group[data-group=orders] svg.bytes-added', 'aria-label')) ?? '', /Bytes added .* orders, 3 snapshots/);
    assert.equal(await page.getAttribute('section.chart-group[data-group=orders] svg.bytes-added', 'role'), 'img');
    await page.close();
  });

  test('the diff drill-down lists the file added between the last two snapshots', async () => {
    const { page } = await openPage(browser, `${url}/#snapshots`);
    await page.evaluate((t) => sessionStorage.setItem('meshback-token', t), token);
    await page.reload();
    await page.locator('body[data-loaded=true]').waitFor({ timeout: 20_000 });
    await page.click(`tr[data-snapshot="${orders[0]!.id}"] .diff-button`);
    await page.locator('#diff-list li').first().waitFor({ timeout: 10_000 });
    const items = await page.$$eval('#diff-list li', (els) => els.map((e) => e.textContent));
    assert.ok(items.includes('+ /new-file.txt'), JSON.stringify(items));
    assert.ok(items.includes('+ /db/part-2.dat'), JSON.stringify(items));
    assert.match((await page.textContent('#diff-counts')) ?? '', /^2 added, 0 removed/);
    await page.close();
  });

  test('keyboard only: Tab reaches the tabs and the restore button, Enter activates them; the verified restore completes and equals the source', async () => {
    const { page, errors } = await openPage(browser, `${url}/`);
    await page.evaluate((t) => sessionStorage.setItem('meshback-token', t), token);
    await page.reload();
    await page.locator('body[data-loaded=true]').waitFor({ timeout: 20_000 });
    const active = (): Promise<string> =>
      page.evaluate(() => {
        const a = (globalThis as unknown as { document: PageDoc }).document.activeElement;
        return `${a?.id ?? ''}|${a?.className ?? ''}`;
      });
    const tabTo = async (pred: (a: string) => boolean, max = 80): Promise<void> => {
      for (let i = 0; i < max; i++) {
        if (pred(await active())) return;
        await page.keyboard.press('Tab');
      }
      assert.fail(`Tab did not reach it in ${max} presses (at ${await active()})`);
    };
    await tabTo((a) => a.startsWith('tab-overview|'));
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    assert.match(await active(), /^tab-snapshots\|/);
    await page.keyboard.press('Enter');
    assert.equal(await page.isVisible('#snapshots'), true);
    assert.equal(await page.getAttribute('#tab-snapshots', 'aria-selected'), 'true');
    // the first restore button is the newest snapshot's of orders (the first group)
    await tabTo((a) => a.endsWith('|restore-button'));
    assert.equal(await page.evaluate(() => (globalThis as unknown as { document: PageDoc }).document.activeElement?.closest('tr')?.getAttribute('data-snapshot')), orders[0]!.id);
    await page.keyboard.press('Enter');
    await page.locator('#restore-dialog[open]').waitFor({ timeout: 5000 });
    const target = path.join(base, 'restored', 'orders');
    await page.keyboard.type(target);
    await page.keyboard.press('Tab');
    await page.keyboard.type(target + 'x');
    await page.keyboard.press('Enter');
    assert.match((await page.textContent('#restore-error')) ?? '', /differ/, 'a mistyped confirmation is refused');
    await page.keyboard.press('Backspace');
    await page.keyboard.press('Enter');
    await page.locator('#restore-status[data-status=succeeded]').waitFor({ timeout: 60_000 });
    assert.match((await page.textContent('#restore-text')) ?? '', /Restored and verified: .* 4 files/);
    assert.deepEqual(await compareTrees(data, target), []);
    if (SHOTS !== undefined) await page.screenshot({ path: path.join(SHOTS, 'restore.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a restore into a non-empty directory is refused with 409; the reports are listed and served; the advisor panel shows each policy\'s advice and open anomalies; a check with every pack read runs from the Health page', async () => {
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const res = await fetch(`${url}/v1/restores`, { method: 'POST', headers: auth, body: JSON.stringify({ snapshot: orders[0]!.id, target: data }) });
    assert.equal(res.status, 409);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'TARGET_NOT_EMPTY');
    assert.doesNotMatch(body.error.message, /\n/);
    const reports = (await (await fetch(`${url}/v1/reports`, { headers: auth })).json()) as { name: string }[];
    assert.deepEqual(reports.map((r) => r.name).sort(), ['fault-2026-12-06.html', 'fault-2026-12-06.json']);
    assert.equal((await fetch(`${url}/v1/reports/..%2Fpw`, { headers: auth })).status, 404);
    const { page } = await openPage(browser, `${url}/#advisor`);
    await page.evaluate((t) => sessionStorage.setItem('meshback-token', t), token);
    await page.reload();
    await page.locator('body[data-loaded=true]').waitFor({ timeout: 20_000 });
    // the advisor panel shows what /v1/advice says, per policy: the advice's reason and the open anomalies
    const advice = (await (await fetch(`${url}/v1/advice`, { headers: auth })).json()) as { policies: { policy: string; advice?: { reason: string }; anomalies?: { open: unknown[] } }[] };
    assert.deepEqual(advice.policies.map((p) => p.policy).sort(), ['cache', 'orders']);
    for (const p of advice.policies) {
      const section = page.locator(`section.advice[data-policy="${p.policy}"]`);
      await section.waitFor({ timeout: 10_000 });
      assert.equal(await section.getAttribute('data-open-anomalies'), String(p.anomalies?.open.length ?? 0));
      if (p.advice !== undefined) assert.equal(await section.locator('.reason').textContent(), p.advice.reason);
    }
    assert.equal(await page.locator('#reports a').count(), 2);
    // Health: a check with every pack read, started from the page, recorded as the repository's last check
    await page.locator('[role=tab]', { hasText: 'Health' }).click();
    const health = page.locator('#health-body section').first();
    await health.locator('input.read-data').check();
    await health.locator('button.run-check').click();
    await page.locator('#health-body .last-check[data-status=done]').waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('#health-body .last-check').getAttribute('data-ok'), 'true');
    assert.match((await page.locator('#health-body .last-check').textContent()) ?? '', /all data read: no errors/);
    const repoInfo = (await (await fetch(`${url}/v1/repository`, { headers: auth })).json()) as { lastCheck: { ok: boolean; readData: boolean; packsRead: number; damagedPacks: string[] } }[];
    assert.equal(repoInfo[0]!.lastCheck.ok, true);
    assert.equal(repoInfo[0]!.lastCheck.readData, true);
    assert.ok(repoInfo[0]!.lastCheck.packsRead > 0);
    assert.deepEqual(repoInfo[0]!.lastCheck.damagedPacks, []);
    await page.close();
  });

  test('meshback ui --repo: the same dashboard for the repository alone, snapshots grouped by host, paths and tags', async () => {
    const p = spawn(BIN, ['ui', '--json', '--repo', repo, '--password-file', path.join(base, 'pw'), '--listen', '127.0.0.1:0'], { env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CACHE_DIR: path.join(os.tmpdir(), 'meshback-test-cache') }, stdio: ['ignore', 'pipe', 'pipe'] });
    liveServers.add(p);
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const t0 = performance.now();
    let uiUrl: string | undefined;
    while (uiUrl === undefined && performance.now() - t0 < 20_000) {
      const line = out.split('\n').find((l) => l.includes('"event":"start"'));
      if (line !== undefined) uiUrl = (JSON.parse(line) as { api: string }).api;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(uiUrl !== undefined, 'meshback ui started');
    const { page, errors, requests } = await openPage(browser, `${uiUrl}/`);
    await page.locator('body[data-loaded=true]').waitFor({ timeout: 20_000 });
    const groups = await page.$$eval('#overview-body tr[data-group]', (els) => els.map((e) => e.getAttribute('data-group')));
    assert.equal(groups.length, 2, JSON.stringify(groups));
    assert.ok(groups.some((g) => g!.endsWith(`:${data}`)), JSON.stringify(groups));
    assert.match((await page.textContent('#mode')) ?? '', /repository view/);
    assert.equal(await page.locator(`section.chart-group svg.bytes-added .point[data-snapshot="${orders[0]!.id}"]`).count(), 1);
    if (SHOTS !== undefined) await page.screenshot({ path: path.join(SHOTS, 'repo-overview.png'), fullPage: true });
    assert.deepEqual(errors, []);
    assert.deepEqual(requests.filter((u) => !local(u)), []);
    await page.close();
    p.kill('SIGTERM');
    const code = await new Promise<number | null>((res) => p.on('exit', (c) => res(c)));
    assert.equal(code, 0);
  });
});

/** docs/ui/PAGE.png of every page of the dashboard */
async function shoot(page: Page): Promise<void> {
  await fsp.mkdir(SHOTS!, { recursive: true });
  for (const id of ['overview', 'charts', 'snapshots', 'drills', 'health', 'reports', 'advisor']) {
    await page.click(`#tab-${id}`);
    if (id === 'snapshots') {
      await page.click('.diff-button');
      await page.locator('#diff-list li').first().waitFor({ timeout: 10_000 });
    }
    await page.screenshot({ path: path.join(SHOTS!, `${id}.png`), fullPage: true });
  }
  await page.click('#tab-overview');
}
