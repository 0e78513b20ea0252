/** testbed/http: what the testbed's small HTTP servers (service, supervisor) share. */
import type * as http from 'node:http';

/** The request body as UTF-8; a body over `limit` bytes destroys the request (the promise rejects). */
export function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > limit) req.destroy(new Error(`request body over ${limit} bytes`));
      else chunks.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
