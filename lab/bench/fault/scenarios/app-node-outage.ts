/**
 * Scenario app-node-outage: the whole node goes down under load: every process of the testbed is
 * killed with SIGKILL and every volume thrown away (directory deleted; btrfs image unmounted and
 * deleted). All volumes come back from the tool's repository alone, into fresh directories; the
 * testbed starts everything on them and is verified as a service. See app-common.ts for the steps.
 */
import { appScenario } from './app-common.ts';

export const appNodeOutage = appScenario({
  id: 'app-node-outage',
  title: 'Node outage of the service mesh (testbed)',
  description:
    'A service mesh (two Node services behind nginx sidecars, PostgreSQL for orders, Redis for sessions) takes load; the tool backs up all its volumes while it serves; under load the node goes down (every process killed, every volume thrown away); all volumes are restored with the tool from its repository alone into fresh directories, everything is started on them and the service is verified: nginx -t, traffic through every sidecar, PostgreSQL amcheck, Redis data, every acknowledged write looked up.',
  fault: 'node-outage',
});
