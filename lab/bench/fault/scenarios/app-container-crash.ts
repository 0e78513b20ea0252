/**
 * Scenario app-container-crash: the orders service (its app and nginx sidecar) and PostgreSQL are
 * killed with SIGKILL under load; their volumes are replaced by the tool's restore of its latest
 * backup, the containers start on them, and the testbed is verified as a service. Redis and the
 * sessions service keep running on their own volumes. See app-common.ts for the steps.
 */
import { appScenario } from './app-common.ts';

export const appContainerCrash = appScenario({
  id: 'app-container-crash',
  title: 'Service container crash (testbed)',
  description:
    'A service mesh (two Node services behind nginx sidecars, PostgreSQL for orders, Redis for sessions) takes load; the tool backs up all its volumes while it serves; under load the orders service and PostgreSQL are killed with SIGKILL, their volumes are replaced by the tool\'s restore of its latest backup, and the service is verified: nginx -t, every component starts, traffic through every sidecar, PostgreSQL amcheck, every acknowledged write looked up.',
  fault: 'container-crash',
  targets: ['orders', 'postgres'],
});
