import { Command } from 'commander';
import { configOption } from '../context.js';
import { withMailboxIdentity } from '../mailbox-identity.js';

export function tokenCommand(): Command {
  return new Command('token')
    .description("Get a mailbox's access token and show its decoded claims: audience, roles or scopes, tenant, app, user, expiry.")
    .addOption(configOption())
    .option('-m, --mailbox <address>', 'mailbox (default: the only configured one)')
    .option('--json', 'print the claims as JSON')
    .option('--raw', 'also print the access token itself (it is a secret: keep it out of logs and tickets)')
    .action(async (flags: { config?: string; mailbox?: string; json?: boolean; raw?: boolean }) => {
      await withMailboxIdentity(flags, async ({ config, logger, mailbox, identity }) => {
        const token = await identity.provider.getToken(mailbox);
        const [{ summarizeToken, readCredentialExpiry, expiryStatus, secretEndDates }, { scrubSecrets }] = await Promise.all([
          import('../../identity/index.js'),
          import('../../observe/index.js'),
        ]);
        const s = summarizeToken(token.accessToken);
        // The app credential behind the token: when the client secret or certificate itself ends (with
        // auth.secretExpiresFromGraph, as the app registration lists it).
        const auth = identity.auth.get(mailbox.toLowerCase()) ?? config.auth;
        const graph = auth.secretExpiresFromGraph === true ? secretEndDates(() => config, { logger }) : undefined;
        const read = await readCredentialExpiry(mailbox, auth, graph?.read).finally(() => graph?.close());
        const graphError = read?.graphError;
        const status = read ? expiryStatus(read.expiresAt) : undefined;
        const credential = read
          ? {
              kind: read.kind,
              expiresAt: read.expiresAt?.toISOString() ?? null,
              daysLeft: status?.daysLeft !== undefined ? Math.floor(status.daysLeft) : null,
              status: status?.status ?? 'unknown',
              source: read.source ?? null,
              ...(read.thumbprint ? { thumbprint: read.thumbprint } : {}),
              ...(graphError !== undefined ? { graphError: scrubSecrets(graphError.message) } : {}),
            }
          : null;
        if (flags.json) {
          console.log(
            JSON.stringify(
              {
                mailbox,
                expiresOn: token.expiresOn.toISOString(),
                claims: s ?? null,
                credential,
                ...(flags.raw ? { accessToken: token.accessToken } : {}),
              },
              null,
              2,
            ),
          );
          return;
        }
        console.log(`mailbox     ${mailbox}`);
        if (s) {
          console.log(`kind        ${s.kind}`);
          console.log(`audience    ${s.audience}`);
          console.log(`tenant      ${s.tenantId ?? '-'}`);
          console.log(`app         ${s.appId ?? '-'}${s.appName ? ` (${s.appName})` : ''}`);
          if (s.user) console.log(`user        ${s.user}`);
          console.log(`${s.kind === 'app-only' ? 'roles ' : 'scopes'}      ${(s.kind === 'app-only' ? s.roles : s.scopes).join(' ') || '(none)'}`);
        } else {
          console.log('claims      (opaque token: not a JWT)');
        }
        console.log(`expires     ${token.expiresOn.toISOString()} (in ${Math.round((token.expiresOn.getTime() - Date.now()) / 1000)} s)`);
        if (credential)
          console.log(
            `credential  ${credential.kind} ${credential.expiresAt ? `expires ${credential.expiresAt} (${credential.status}, ${credential.daysLeft} days${credential.source === 'graph' ? ', as the app registration lists it' : ''})` : 'end date unknown (set auth.secretExpires)'}`,
          );
        if (credential?.graphError) console.log(`            Graph did not give the end date: ${credential.graphError}`);
        if (flags.raw) console.log(`token       ${token.accessToken}`);
      });
    });
}
