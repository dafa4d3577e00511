/**
 * Message bytes: the one header reader, the byte rules (NUL, line length, CRLF), the originator
 * checks, trace fields and sender rewriting. Front doors, the admission pipeline, the outbox and
 * delivery read messages through this module; it depends on nothing of relay365.
 */
export type { Envelope } from './envelope.js';
export { MAX_LINE_OCTETS, MessageCollector, scanBytes, toCrlf, type ByteScan } from './bytes.js';
export {
  headerBlock,
  headerBounds,
  headerFromAddresses,
  headerValues,
  messageIdOf,
  parseHeaderBlock,
  readHeaders,
  splitHeaderBody,
  type HeaderBounds,
  type HeaderSection,
} from './headers.js';
export { checkHeaderSection, isAddrSpec, parseMailboxList, type HeaderCheck } from './originators.js';
export { messageIdDomain, rfc5322Date, traceFields, type TraceInfo } from './trace.js';
export { rewriteFrom, type KeepSender, type SenderRewrite } from './rewrite.js';
