/**
 * parity: Reed-Solomon erasure coding of packs. Pure (no I/O), like crypto/ and chunker/.
 *
 * - gf256.ts: arithmetic in GF(2^8) and the block kernels (dst ^= c * src).
 * - rs.ts: the systematic k+m code: encode a stripe, rebuild up to m lost shards.
 * - format.ts: the parity file of a pack (layout, header, per-block hashes, parity blocks),
 *   and the repair of a damaged pack from it, verified against the pack's name.
 *
 * A *stripe* is k data blocks plus m parity blocks; a *parity file* holds the parity blocks
 * and block hashes of one pack and is named like that pack. See docs/design.md, "Parity".
 */
export { DEFAULT_PARITY, PARITY_SCHEME_NAME, decodeParityHeader, encodeParityFile, layoutFor, parityFileSize, parseParityScheme, repairFromParity, schemeProblem, schemeString, sha256Hex } from './format.ts';
export type { ParityHeader, ParityLayout, ParityScheme, RepairOutcome, RepairStatus } from './format.ts';
export { ReedSolomon, codecFor } from './rs.ts';
