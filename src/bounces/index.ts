export { parseNdr, parseHeaders, oneLine, type ParsedNdr, type NdrRecipient, type NdrParseResult, type NdrParseLimits } from './ndr-parse.js';
export { bounceClass, hardReason, BOUNCE_CLASSES, type BounceClass } from './classify.js';
export { GraphMailClient, GraphMailError, type DeltaMessage, type DeltaPage, type GraphMailClientOptions } from './graph-mail.js';
export { BounceReader, bounceEventId, looksLikeReport, type BounceReaderOptions, type BounceRunSummary, type BounceSettings, type BounceStore } from './reader.js';
export { suppressionReply, suppressionMessage } from './suppression.js';
