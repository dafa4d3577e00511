import { Relay365Error } from '../../errors.js';
import { Command, Option } from 'commander';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../../config/index.js';
import { configOption } from '../context.js';
import { withMailboxIdentity } from '../mailbox-identity.js';

/**
 * After a sign-in: a mailbox relay365 paused because it needed one (R365_LOGIN_REQUIRED, AADSTS70043
 * sign-in frequency, a revoked session) is asked to resume, so a running relay sends its queue within
 * seconds instead of at its next probe. Only an outbox that exists is opened (a first sign-in before any
 * relay ran creates nothing). Returns the pause's cause when there was one.
 */
export async function resumeAfterLogin(config: Config, mailbox: string): Promise<string | undefined> {
  if (config.queue.url === undefined && !existsSync(resolve(config.dataDir, config.queue.path))) return undefined;
  const { openOutboxStore } = await import('../../runtime/stores.js');
  const store = await openOutboxStore(config);
  try {
    await store.migrate();
    const pause = await store.requestMailboxResume(mailbox);
    return pause === undefined ? undefined : (pause.explanation?.cause ?? pause.reply ?? 'paused');
  } finally {
    await store.close();
  }
}

/** Tries the desktop's URL opener; the URL is printed anyway for headless machines. */
function openInBrowser(url: string): void {
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  try {
    const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No opener: the person copies the printed URL.
  }
}

export function loginCommand(): Command {
  return new Command('login')
    .description('Sign in a delegated mailbox (device code, or browser with auth code + PKCE) and keep its refresh token in the encrypted cache.')
    .addOption(configOption())
    .option('-m, --mailbox <address>', 'mailbox to sign in (default: the only configured one)')
    .addOption(new Option('--browser', 'use the auth code + PKCE flow with a loopback redirect (default for flow: auth-code)'))
    .addOption(new Option('--no-open', 'do not try to open a browser; only print the sign-in URL'))
    .addHelpText(
      'after',
      `
Device code (flow: device-code): prints a URL and a code; sign in there as the mailbox, on any device.
Browser (flow: auth-code or --browser): prints the sign-in URL and waits on http://localhost:<port> for the redirect.
Afterwards relay365 refreshes the token by itself; run login again only when told (R365_LOGIN_REQUIRED,
event mailbox.needs_login). A mailbox paused for want of a sign-in is resumed at once.`,
    )
    .action(async (flags: { config?: string; mailbox?: string; browser?: boolean; open: boolean }) => {
      await withMailboxIdentity(flags, async ({ config, mailbox, identity }) => {
        const source = identity.delegated(mailbox);
        const flow = identity.auth.get(mailbox.toLowerCase())?.flow;
        if (!source && flow === undefined) {
          throw new Relay365Error(
            'R365_UNKNOWN_MAILBOX',
            `${mailbox} is not a configured mailbox; add it under mailboxes: in the config, or pass one of the configured ones.`,
            {
              details: { mailbox },
            },
          );
        }
        if (!source) {
          console.log(`${mailbox} uses ${flow ?? 'no'} sign-in: nothing to log in. Check it with \`relay365 token --mailbox ${mailbox}\`.`);
          return;
        }
        const account =
          flags.browser || flow === 'auth-code'
            ? await source.loginWithBrowser(mailbox, async (url) => {
                console.log(`Sign in as ${mailbox} in a browser:\n  ${url}`);
                if (flags.open) openInBrowser(url);
                await Promise.resolve();
              })
            : await source.loginWithDeviceCode(mailbox, (info) => {
                console.log(info.message || `To sign in, open ${info.verificationUri} and enter the code ${info.userCode}`);
                console.log(`  url:  ${info.verificationUri}\n  code: ${info.userCode}`);
              });
        console.log(`Signed in as ${account.username}; the refresh token is stored encrypted in ${config.dataDir}/tokens.`);
        const cause = await resumeAfterLogin(config, mailbox).catch((err: unknown) => {
          console.error(
            `Could not ask the relay to resume ${mailbox} (${(err as Error).message}); it resumes at its next probe, or run relay365 queue resume ${mailbox}.`,
          );
          return undefined;
        });
        if (cause !== undefined) console.log(`${mailbox} was paused (${cause}); a running relay365 resumes it and sends its queue within seconds.`);
      });
    });
}
