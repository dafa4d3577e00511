import { SMTPServer } from 'smtp-server';
import type { Logger } from '../observe/index.js';
import type { SandboxState } from './state.js';
import type { CertificatePair } from './tls.js';
import type { TokenIssuer } from './tokens.js';

/** Exchange Online SMTP client submission (smtp.office365.com:587). */
export function createExchangeSmtp(deps: { state: SandboxState; issuer: TokenIssuer; tls: CertificatePair; logger: Logger }): SMTPServer {
  return new SMTPServer({ key: deps.tls.keyPem, cert: deps.tls.certPem });
}
