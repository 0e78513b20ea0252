/** Footnotes shared by the scenarios that run the workload. */
import type { WriteAssessment } from '../workload.ts';

const MiB = 1024 * 1024;

/** What became of the workload's acknowledged writes, as report footnotes. */
export function writesNotes(w: WriteAssessment, lastBackup: string): string[] {
  const notes = [
    `workload: ${w.acknowledged} acknowledged writes (${(w.acknowledgedBytes / MiB).toFixed(2)} MiB); ${w.present} recovered, ${w.lost} lost`,
  ];
  if (w.lostBefore > 0) notes.push(`${w.lostBefore} write(s) acknowledged before ${lastBackup} started are missing: the backup did not capture durable data`);
  if (w.tornStates.length > 0) notes.push(`state file(s) restored torn or damaged (no valid version): ${w.tornStates.slice(0, 5).join(', ')}${w.tornStates.length > 5 ? ', ...' : ''}`);
  return notes;
}
