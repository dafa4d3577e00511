import { randomFillSync } from 'node:crypto';

let lastIdMs = 0;
let idSequence = 0;

/** Random bytes drawn 4 KB at a time, as randomUUID does: one call into OpenSSL per 227 ids, not two per id. */
const entropy = Buffer.alloc(4096);
let entropyAt = entropy.length;

function random(n: number): Buffer {
  if (entropyAt + n > entropy.length) {
    randomFillSync(entropy);
    entropyAt = 0;
  }
  const out = Buffer.from(entropy.subarray(entropyAt, entropyAt + n));
  entropyAt += n;
  return out;
}

/**
 * A UUIDv7 (RFC 9562, 5.7): 48 bits of milliseconds, then a 12-bit counter (6.2, method 1) so that
 * ids made in one process sort in the order they were made, which keeps "oldest first" exact for
 * messages stored within the same millisecond. The counter starts at a random point in its lower
 * half, leaving room to count up. Every outbox store (SQLite, PostgreSQL) makes its ids here, so ids
 * look and sort the same whichever store holds them.
 */
export function newMessageId(now: number): string {
  if (now > lastIdMs) {
    lastIdMs = now;
    idSequence = random(2).readUInt16BE(0) & 0x7ff;
  } else if (++idSequence > 0xfff) {
    // 4,096 ids in one millisecond: borrow the next millisecond, as 6.2 allows.
    lastIdMs += 1;
    idSequence = 0;
  }
  const bytes = random(16);
  bytes.writeUIntBE(lastIdMs, 0, 6);
  bytes[6] = 0x70 | (idSequence >> 8);
  bytes[7] = idSequence & 0xff;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10xx (RFC 9562, 4.1)
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
