/** The shape of a CLI command: options declared as data, a run function returning an exit code. */
import type { Context } from './context.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  description: string;
  argument?: string;
  /**
   * For a string option whose value may be left out (`--parity` alone): the value it then takes.
   * The next word is the value unless it starts with '-'.
   */
  optionalValue?: string;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  run(ctx: Context, values: Record<string, string | boolean | string[] | boolean[] | undefined>, positionals: string[]): Promise<number>;
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
export function strs(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}
export function bool(v: unknown): boolean {
  return v === true;
}
