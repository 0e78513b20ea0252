/**
 * events: the typed progress/event stream emitted by the engine. Core code never prints;
 * it emits events to an EventSink. The CLI renders them (TTY bar, plain lines or JSON).
 */

export type MeshEvent =
  | { type: 'scan-progress'; files: number; bytes: number; done: boolean }
  | { type: 'progress'; op: 'backup' | 'restore' | 'check' | 'verify' | 'repair'; files: number; bytes: number; totalFiles?: number; totalBytes?: number; current?: string }
  | { type: 'item-error'; path: string; message: string }
  | { type: 'warning'; path?: string; message: string };

export type EventSink = (e: MeshEvent) => void;

export const nullSink: EventSink = () => undefined;
