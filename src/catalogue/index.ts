export type { ReplyClass, Explanation, Handling } from './types.js';
export { AADSTS_CATALOGUE, explainAadsts, findAadstsCode } from './aadsts.js';
export { SMTP_REPLY_CATALOGUE, explainSmtpReply, isUnknownReply, parseReply, type SmtpReplyRow } from './smtp-replies.js';
export { explainConnectionError } from './connection-errors.js';
export { SETUP_FINDINGS, explainSetupFinding, type SetupFinding } from './setup-findings.js';
export { GRAPH_ERROR_CATALOGUE, explainGraphError, type GraphErrorRow } from './graph-errors.js';
export { SOURCES } from './sources.js';
