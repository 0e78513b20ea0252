/**
 * policy/window: a daily maintenance window, `HH:MM-HH:MM` in a time zone (the policy's
 * `timezone`, else the host's), in which a policy's prune runs. A window may cross midnight
 * (`22:00-02:00`); its end is exclusive. The server starts the prune at the window's start
 * (windowStart gives that time as a cron schedule); `meshback run` prunes only inside it.
 */
import type { Schedule } from './load.ts';

export interface MaintenanceWindow {
  /** minutes after midnight, local time of `timezone` */
  start: number;
  end: number;
  timezone?: string;
  text: string;
}

const WINDOW = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$/;
export const WINDOW_TEXT = 'must be a daily window HH:MM-HH:MM such as 01:00-05:00 (24-hour clock; it may cross midnight: 22:00-02:00)';

/** The window of `text`, or undefined when it is not one (or is empty). */
export function parseWindow(text: string, timezone?: string): MaintenanceWindow | undefined {
  const m = WINDOW.exec(text);
  if (m === null) return undefined;
  const start = Number(m[1]) * 60 + Number(m[2]);
  const end = Number(m[3]) * 60 + Number(m[4]);
  if (end > 24 * 60 || start === end) return undefined;
  return { start, end: end % (24 * 60), text, ...(timezone !== undefined ? { timezone } : {}) };
}

/** minutes after midnight of `at` (ms since the epoch) in `timezone` */
function minuteOfDay(at: number, timezone: string | undefined): number {
  const parts = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', ...(timezone !== undefined ? { timeZone: timezone } : {}) }).formatToParts(new Date(at));
  const n = (t: string) => Number(parts.find((p) => p.type === t)?.value ?? 0);
  return n('hour') * 60 + n('minute');
}

/** true when `at` falls inside the window */
export function inWindow(w: MaintenanceWindow, at: number): boolean {
  const m = minuteOfDay(at, w.timezone);
  return w.start < w.end ? m >= w.start && m < w.end : m >= w.start || m < w.end;
}

/** the window's start as a daily cron schedule, for the server's prune job */
export function windowStart(w: MaintenanceWindow): Schedule {
  const expr = `${w.start % 60} ${Math.floor(w.start / 60)} * * *`;
  return { kind: 'cron', expr, text: `cron: ${expr} (the start of the maintenance window ${w.text})`, ...(w.timezone !== undefined ? { timezone: w.timezone } : {}) };
}

/** "01:00-05:00 Europe/Berlin" */
export function windowText(w: MaintenanceWindow): string {
  return `${w.text}${w.timezone !== undefined ? ` ${w.timezone}` : ''}`;
}
