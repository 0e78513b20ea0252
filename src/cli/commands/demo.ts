import type { Command } from '../command.ts';
export const demoCommand: Command = { name: 'demo', summary: 'demo', usage: 'meshback demo', options: {}, async run() { return 0; } };
