/**
 * bench/fault/scenarios: the registry. A scenario is one module exporting a Scenario
 * (types.ts); adding one is one import and one entry in SCENARIOS (the report's order). The app-*
 * scenarios run on the testbed (lab/testbed) and judge recovery at application level.
 */
import type { Scenario, ScenarioId } from '../types.ts';
import { appContainerCrash } from './app-container-crash.ts';
import { appNodeOutage } from './app-node-outage.ts';
import { containerCrash } from './container-crash.ts';
import { diskFull } from './disk-full.ts';
import { nodeOutage } from './node-outage.ts';
import { repoCorruption } from './repo-corruption.ts';
import { s3Outage } from './s3-outage.ts';
import { volumeCorruption } from './volume-corruption.ts';

export const SCENARIOS: readonly Scenario[] = [
  containerCrash,
  nodeOutage,
  volumeCorruption,
  repoCorruption,
  diskFull,
  s3Outage,
  appContainerCrash,
  appNodeOutage,
];

export function scenarioById(id: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.id === (id as ScenarioId));
}
