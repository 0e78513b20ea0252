/**
 * server/advice-routes: GET /v1/advice[?policy=NAME] and GET /v1/anomalies of `meshback server`
 * (behind the API's token like the rest of /v1): the advice report and the open anomaly alerts
 * of the policies (bodies: docs/schemas/advice.json, docs/schemas/anomalies.json, the same JSON as
 * `meshback advise --json`). The front end (src/cli/commands/server.ts) makes them.
 */
import type { Env, Hono } from 'hono';
import { MeshbackError, errMessage } from '../errors/index.ts';
import { POLICY_NAME } from '../policy/schema.ts';

export interface AdviceSource {
  /** the advice report of every policy, or of `policy` (a NOT_FOUND MeshbackError for an unknown one) */
  advice(policy?: string): Promise<unknown>;
  /** the open anomaly alerts of every policy */
  anomalies(): Promise<unknown>;
}

export function registerAdviceRoutes<E extends Env>(app: Hono<E>, o: AdviceSource): void {
  const failed = (err: unknown): Response => {
    const notFound = err instanceof MeshbackError && err.code === 'NOT_FOUND';
    const body = { error: { code: err instanceof MeshbackError ? err.code : 'INTERNAL', message: errMessage(err).split('\n')[0]! } };
    return Response.json(body, { status: notFound ? 404 : 500 });
  };
  app.get('/v1/advice', async (c) => {
    const policy = c.req.query('policy');
    if (policy !== undefined && !POLICY_NAME.test(policy)) return Response.json({ error: { code: 'BAD_REQUEST', message: `policy=${JSON.stringify(policy)} is not a policy name` } }, { status: 400 });
    try {
      return c.json(await o.advice(policy));
    } catch (err) {
      return failed(err);
    }
  });
  app.get('/v1/anomalies', async (c) => {
    try {
      return c.json(await o.anomalies());
    } catch (err) {
      return failed(err);
    }
  });
}
