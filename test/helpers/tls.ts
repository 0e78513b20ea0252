/** A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI (P-256), for TLS tests. */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runProcess } from './cli.ts';

export interface TestPki {
  /** the CA certificate (what a client trusts: --cacert) */
  caCrt: string;
  /** the server's certificate and key (127.0.0.1, localhost) */
  crt: string;
  key: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await runProcess('sh', ['-c', `cd "$0" && exec openssl "$@"`, cwd, ...args], {}, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} exited ${r.code}: ${r.stderr}`);
}

export async function makeTestPki(dir: string): Promise<TestPki> {
  await fsp.mkdir(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', '-new', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=meshback-test-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], dir);
  await fsp.writeFile(path.join(dir, 'server.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(['req', '-new', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-out', 'server.crt', '-days', '30', '-extfile', 'server.ext'], dir);
  return { caCrt: path.join(dir, 'ca.crt'), crt: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') };
}
