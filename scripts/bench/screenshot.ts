/**
 * Renders a report.html (or any local HTML page) to PNG with headless Chromium, to check that
 * `meshback bench`'s report opens and looks right in a browser:
 *   bin/node scripts/bench/screenshot.ts REPORT.html [--out PNG] [--width 1400] [--height auto|N]
 *     [--parts N] [--chromium PATH] [--no-install]
 *
 * Runs `chromium --headless --screenshot=PNG --window-size=WIDTH,HEIGHT file://REPORT.html`.
 * --height auto (the default) renders into a tall window and crops the empty bottom, so the PNG
 * holds the whole page. --parts N also cuts the PNG into N slices (PNG-1.png, …) of equal height,
 * for viewers that shrink a tall image. Chromium is the Debian package `chromium`: when it is
 * missing and this runs as root, it is installed with apt-get (unless --no-install).
 * Prints the PNG path(s) on stdout.
 * Exit 0: written; 1: Chromium failed or wrote no image; 2: bad command line, file or Chromium missing.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { crc32, deflateSync, inflateSync } from 'node:zlib';
import { aptInstall, isRoot } from '../../src/host/packages.ts';
import { which } from '../../src/host/process.ts';

const USAGE = 'usage: bin/node scripts/bench/screenshot.ts REPORT.html [--out PNG] [--width 1400] [--height auto|N] [--parts N] [--chromium PATH] [--no-install]';

function fail(code: number, msg: string): never {
  process.stderr.write(`screenshot: ${msg}\n`);
  process.exit(code);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      out: { type: 'string' },
      width: { type: 'string', default: '1400' },
      height: { type: 'string', default: 'auto' },
      parts: { type: 'string', default: '1' },
      chromium: { type: 'string' },
      'no-install': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
} catch (err) {
  fail(2, `${(err instanceof Error ? err.message : String(err)).split('\n')[0]}; ${USAGE}`);
}
const v = parsed.values;
if (v.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
if (parsed.positionals.length !== 1) fail(2, `give one HTML file; ${USAGE}`);
const page = path.resolve(parsed.positionals[0]!);
if (!existsSync(page)) fail(2, `${page} does not exist: render a report first (meshback bench report DIR)`);
const posInt = (name: string, s: string, max: number): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > max) fail(2, `--${name} must be an integer from 1 to ${max}, not ${JSON.stringify(s)}`);
  return n;
};
const width = posInt('width', v.width, 10000);
const autoHeight = v.height === 'auto';
/** the window of an auto-height render: tall enough for a long report, within Chromium's limit */
const AUTO_HEIGHT = 16000;
const height = autoHeight ? AUTO_HEIGHT : posInt('height', v.height, 30000);
const parts = posInt('parts', v.parts, 50);
const out = path.resolve(v.out ?? page.replace(/\.html?$/i, '') + '.png');

async function findChromium(): Promise<string> {
  if (v.chromium !== undefined) {
    const c = await which(v.chromium);
    if (c === undefined) fail(2, `--chromium ${v.chromium} is not an executable`);
    return c;
  }
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    const c = await which(name);
    if (c !== undefined) return c;
  }
  if (v['no-install']) fail(2, 'chromium is missing: install the Debian package chromium (apt-get install chromium) or pass --chromium PATH');
  if (!isRoot()) fail(2, 'chromium is missing and this is not root: install the Debian package chromium (apt-get install chromium) or pass --chromium PATH');
  process.stderr.write('screenshot: installing the Debian package chromium…\n');
  const err = await aptInstall(['chromium']);
  const c = await which('chromium');
  if (err !== undefined || c === undefined) fail(2, `could not install chromium: ${err ?? 'apt-get install chromium gave no chromium on PATH'}`);
  return c;
}

function runChromium(bin: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-8000);
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

// ---------------------------------------------------------------- PNG: decode, crop, encode (8-bit RGB/RGBA only)

interface Image {
  width: number;
  height: number;
  channels: number;
  /** unfiltered rows, width * channels bytes each */
  rows: Buffer[];
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function decodePng(buf: Buffer): Image {
  if (!buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG file');
  let off = 8;
  let w = 0;
  let h = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      w = data.readUInt32BE(0);
      h = data.readUInt32BE(4);
      const depth = data[8];
      const color = data[9];
      if (depth !== 8 || (color !== 2 && color !== 6) || data[12] !== 0) throw new Error(`PNG with bit depth ${depth}, colour type ${color}, interlace ${data[12]}: only 8-bit RGB/RGBA, not interlaced, can be cropped`);
      channels = color === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = w * channels;
  const rows: Buffer[] = [];
  let prev = Buffer.alloc(stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)]!;
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? line[i - channels]! : 0;
      const b = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      let add = 0;
      if (f === 1) add = a;
      else if (f === 2) add = b;
      else if (f === 3) add = (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (f !== 0) throw new Error(`PNG row ${y} has an unknown filter ${f}`);
      line[i] = (line[i]! + add) & 0xff;
    }
    rows.push(line);
    prev = line;
  }
  return { width: w, height: h, channels, rows };
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

function encodePng(img: Image, from: number, to: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(img.width, 0);
  ihdr.writeUInt32BE(to - from, 4);
  ihdr[8] = 8;
  ihdr[9] = img.channels === 4 ? 6 : 2;
  const raw = Buffer.concat(img.rows.slice(from, to).flatMap((r) => [Buffer.from([0]), r]));
  return Buffer.concat([PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', Buffer.alloc(0))]);
}

/** The number of rows to keep: everything down to the last row that differs from the bottom row, plus a margin. */
function contentHeight(img: Image, margin = 24): number {
  const last = img.rows[img.height - 1]!;
  for (let y = img.height - 1; y >= 0; y--) if (!img.rows[y]!.equals(last)) return Math.min(img.height, y + 1 + margin);
  return Math.min(img.height, margin);
}

// ----------------------------------------------------------------

const chromium = await findChromium();
const tmpProfile = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-screenshot-'));
try {
  const args = [
    '--headless',
    '--disable-gpu',
    '--hide-scrollbars',
    '--no-first-run',
    '--no-default-browser-check',
    '--force-device-scale-factor=1',
    `--user-data-dir=${tmpProfile}`,
    ...(isRoot() ? ['--no-sandbox'] : []),
    `--screenshot=${out}`,
    `--window-size=${width},${height}`,
    pathToFileURL(page).href,
  ];
  await fsp.rm(out, { force: true });
  const r = await runChromium(chromium, args);
  if (!existsSync(out)) fail(1, `${chromium} wrote no screenshot (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const written: string[] = [];
  let img: Image | undefined;
  if (autoHeight || parts > 1) img = decodePng(readFileSync(out));
  if (img !== undefined && autoHeight) {
    const h = contentHeight(img);
    if (h >= AUTO_HEIGHT - 24) process.stderr.write(`screenshot: the page is taller than ${AUTO_HEIGHT} px; the PNG shows its top ${AUTO_HEIGHT} px\n`);
    img = { ...img, height: h, rows: img.rows.slice(0, h) };
    writeFileSync(out, encodePng(img, 0, h));
  }
  written.push(out);
  if (img !== undefined && parts > 1) {
    const step = Math.ceil(img.height / parts);
    for (let i = 0; i < parts; i++) {
      const from = i * step;
      const to = Math.min(img.height, from + step);
      if (from >= to) break;
      const f = out.replace(/\.png$/i, '') + `-${i + 1}.png`;
      writeFileSync(f, encodePng(img, from, to));
      written.push(f);
    }
  }
  for (const f of written) process.stdout.write(`${f}\n`);
} finally {
  await fsp.rm(tmpProfile, { recursive: true, force: true });
}
