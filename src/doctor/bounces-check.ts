import { GraphMailClient, GraphMailError } from '../bounces/index.js';
import { explainGraphError } from '../catalogue/index.js';
import { isRelay365Error } from '../errors.js';
import { createIdentity, graphBounceScopes, type TokenCacheStore } from '../identity/index.js';
import { scrubSecrets } from '../observe/index.js';
import type { Check } from './types.js';

/** App-only: a fresh token now, the relay's cache left alone (as the token check does). */
const EMPTY_CACHE: TokenCacheStore = { read: () => Promise.resolve(undefined), write: () => Promise.resolve() };

const RBAC =
  'Grant Mail.Read for this mailbox only with RBAC for Applications (Exchange Online PowerShell): New-ServicePrincipal -AppId <appId> -ObjectId <enterprise application object id>; ' +
  `New-ManagementScope -Name "relay365 mailboxes" -RecipientRestrictionFilter "PrimarySmtpAddress -eq '<mailbox>'"; ` +
  'New-ManagementRoleAssignment -App <appId> -Role "Application Mail.Read" -CustomResourceScope "relay365 mailboxes" ' +
  '(and -Role "Application Mail.ReadWrite" to move or categorize the processed reports).';

/** A delegated reader: the app registration's delegated Graph permission, and a new sign-in. */
const DELEGATED = (mailbox: string): string =>
  'Add Microsoft Graph > Delegated permissions > Mail.ReadWrite to the app registration (Entra admin center > App registrations > the app > API permissions) and grant admin consent, ' +
  `then run relay365 login --mailbox ${mailbox} again.`;

/**
 * `mailboxes[].bounces.read`: the app can read the mailbox's Inbox through Graph (one `GET
 * /users/{mailbox}/mailFolders/inbox`, 200 expected); a 401 or 403 is explained with the RBAC for
 * Applications commands that grant Mail.Read on this mailbox only, or for a delegated mailbox with the
 * delegated Mail.ReadWrite it reads with (the reader's own scopes, identity/clouds.ts).
 */
export const bouncesCheck: Check = {
  id: 'bounces',
  title: 'NDR reading: the app can read the Inbox through Graph (Mail.Read, or delegated Mail.ReadWrite)',
  dependsOn: ['token'],
  async run(ctx) {
    const mailbox = ctx.mailbox!;
    const m = ctx.mailboxConfig;
    if (m?.bounces?.read !== true) return { status: 'skip', detail: `bounces.read is off for ${mailbox}` };
    const appOnly = ctx.auth?.flow === 'client-secret' || ctx.auth?.flow === 'client-certificate' || ctx.auth?.flow === 'federated';
    const cacheStore = appOnly ? EMPTY_CACHE : ctx.cacheStore;
    const identity = await createIdentity(
      { ...ctx.config, mailboxes: [{ ...m, transport: 'graph' }] },
      { logger: ctx.logger, env: ctx.env, delegatedScopes: graphBounceScopes, ...(cacheStore ? { cacheStore } : {}) },
    );
    const rbac = appOnly ? RBAC.replaceAll('<mailbox>', mailbox) : DELEGATED(mailbox);
    try {
      const graph = new GraphMailClient({
        graphHost: identity.cloud.graphHost,
        http: identity.networkClient,
        token: async (mb) => {
          const t = (await identity.provider.getToken(mb)).accessToken;
          ctx.secrets.add(t);
          return t;
        },
        timeoutMs: 30_000,
      });
      await graph.probeInbox(mailbox);
      return { status: 'pass', detail: `Graph answered 200 to GET /users/${mailbox}/mailFolders/inbox: the NDRs can be read` };
    } catch (err) {
      if (err instanceof GraphMailError && (err.status === 401 || err.status === 403)) {
        const explained = explainGraphError(err.status, err.graphCode, mailbox, err.message);
        return {
          status: 'fail',
          detail: err.message,
          cause:
            err.status === 401
              ? `Graph refused the token (${err.graphCode ?? '401'}): it carries no permission Graph accepts for reading mail. ${explained.cause}`
              : appOnly
                ? `Graph refused to let the app read ${mailbox} (${err.graphCode ?? '403'}): the app has no Mail.Read on this mailbox, or an application access policy / RBAC scope leaves it out. ${explained.cause}`
                : `Graph refused the signed-in user's token for reading ${mailbox} (${err.graphCode ?? '403'}): it lacks the delegated Mail.ReadWrite. ${explained.cause}`,
          fix: rbac,
          doc: appOnly
            ? 'https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac'
            : 'https://learn.microsoft.com/en-us/graph/permissions-reference',
        };
      }
      // No Graph token: for a sign-in, most often the app has no consented delegated Mail.ReadWrite (AADSTS65001).
      if (isRelay365Error(err) && !appOnly)
        return {
          status: 'fail',
          detail: `no Graph token for reading ${mailbox}'s NDRs with the sign-in: ${scrubSecrets(err.message)}`,
          cause: 'The reader asks the identity platform for a Graph token with Mail.ReadWrite, with the same sign-in relay365 sends with.',
          fix: DELEGATED(mailbox),
          doc: 'https://learn.microsoft.com/en-us/graph/permissions-reference',
        };
      return {
        status: 'fail',
        detail: `the Inbox of ${mailbox} could not be read: ${scrubSecrets(err instanceof Error ? err.message : String(err))}`,
        cause: 'Graph could not be reached or answered an error (the token check above tells whether a token can be had).',
        fix: 'Check network access to the Graph host of the configured cloud, then run relay365 doctor again.',
      };
    } finally {
      identity.close();
    }
  },
};
