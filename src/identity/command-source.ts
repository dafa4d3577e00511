import { spawn } from 'node:child_process';
import { Relay365Error } from '../errors.js';
import { decodeClaims } from './claims.js';
import type { AcquiredToken, TokenSource } from './token-source.js';

/** Lifetime assumed for a token whose expiry cannot be read (an opaque token): re-run the command after it. */
const OPAQUE_TOKEN_SECONDS = 300;

/**
 * Runs an external command that prints an access token on stdout (msmtp's `passwordeval`, mutt's
 * oauth2.py). `RELAY365_MAILBOX` tells it which mailbox the token is for. stderr is not kept: such
 * helpers sometimes echo what they send.
 */
export class CommandSource implements TokenSource {
  readonly appOnly = false;

  constructor(
    private readonly command: string,
    private readonly timeoutMs: number,
  ) {}

  acquire(mailbox: string): Promise<AcquiredToken> {
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', this.command], { env: { ...process.env, RELAY365_MAILBOX: mailbox }, stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      child.on('error', (cause) => {
        clearTimeout(timer);
        reject(
          new Relay365Error('R365_TOKEN_COMMAND_FAILED', `The token command for ${mailbox} could not start: ${cause.message}.`, { cause, retryable: true }),
        );
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const token = out.trim().split(/\s+/)[0] ?? '';
        if (code !== 0 || token === '') {
          const why = signal ? `was stopped after ${this.timeoutMs} ms` : code !== 0 ? `exited with status ${code}` : 'printed nothing';
          reject(
            new Relay365Error('R365_TOKEN_COMMAND_FAILED', `The token command for ${mailbox} ${why}. Run it by hand: it must print only the access token.`, {
              retryable: true,
            }),
          );
          return;
        }
        const exp = decodeClaims(token)?.exp;
        const expiresOn = new Date(typeof exp === 'number' ? exp * 1000 : Date.now() + OPAQUE_TOKEN_SECONDS * 1000);
        resolve({ accessToken: token, expiresOn });
      });
    });
  }
}
