/** lab/cli: the lab's commands, loaded by the engine's CLI through src/cli/lab.ts only when one runs. */
import type { Command } from '../../src/cli/command.ts';
import { benchCommand } from './bench.ts';
import { demoCommand } from './demo.ts';
import { testbedCommand } from './testbed.ts';

export const labCommands: Command[] = [demoCommand, benchCommand, testbedCommand];
