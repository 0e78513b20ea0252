/**
 * server/listen: where and how the API listens. `--listen HOST:PORT` (`[::1]:8439` for IPv6,
 * port 0 for any free port, `none` for no API); HTTP, or HTTPS with a certificate and key. The
 * rule of the front end: a non-loopback address needs a token and TLS (checked by the caller with
 * isLoopback).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Http2Bindings, HttpBindings } from '@hono/node-server';
import { MeshbackError, UsageError, errMessage, errnoCode } from '../errors/index.ts';

export const DEFAULT_LISTEN = '127.0.0.1:8439';

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT`, `[V6]:PORT` or `none` (undefined). */
export function parseListen(text: string): ListenAddress | undefined {
  if (text === 'none') return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT: give e.g. --listen ${DEFAULT_LISTEN} ([::1]:8439 for IPv6, port 0 for any free port), or --listen none for no API`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) throw new UsageError(`--listen ${JSON.stringify(text)}: ${host} is not an IPv6 address`);
  return { host, port };
}

/** 127.0.0.0/8, ::1, ::ffff:127.x, localhost */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

export interface Listening {
  /** http(s)://HOST:PORT, the port the system gave for port 0 */
  url: string;
  close(): Promise<void>;
}

/** Serves `fetch` on `addr` (HTTPS when `tls` is given); a port in use or an address not of this host is a UsageError. */
export async function listen(fetch: (req: Request, env: HttpBindings | Http2Bindings) => unknown, addr: ListenAddress, tls?: { cert: Buffer; key: Buffer }): Promise<Listening> {
  let server: http.Server | https.Server;
  try {
    server = (tls !== undefined ? createAdaptorServer({ fetch, createServer: https.createServer, serverOptions: { cert: tls.cert, key: tls.key } }) : createAdaptorServer({ fetch })) as http.Server | https.Server;
  } catch (err) {
    throw new UsageError(`the TLS certificate or key cannot be used (${errMessage(err).split('\n')[0]}): give a PEM certificate (--tls-cert) and its private key (--tls-key)`);
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      const code = errnoCode(err);
      const where = `${addr.host}:${addr.port}`;
      if (code === 'EADDRINUSE') reject(new UsageError(`cannot listen on ${where}: the port is in use (another meshback server?): give another --listen HOST:PORT, or --listen none`));
      else if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') reject(new UsageError(`cannot listen on ${where}: no interface of this host has that address: give one of its addresses, e.g. --listen ${DEFAULT_LISTEN}`));
      else if (code === 'EACCES') reject(new UsageError(`cannot listen on ${where}: permission denied (ports below 1024 need privileges): give a port of 1024 or more`));
      else reject(new MeshbackError('INTERNAL', `cannot listen on ${where}: ${errMessage(err)}`));
    };
    server.once('error', onError);
    server.listen(addr.port, addr.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `${tls !== undefined ? 'https' : 'http'}://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
