/** An access token and when it stops working. */
export interface AcquiredToken {
  accessToken: string;
  expiresOn: Date;
}

/**
 * One way of obtaining a token (an MSAL flow or an external command). The provider decides when to
 * call it; `force` asks for a new token even when the source has a cached one.
 */
export interface TokenSource {
  /** Tokens from app-only sources are not tied to a user and serve every mailbox of the app. */
  readonly appOnly: boolean;
  acquire(mailbox: string, options: { force: boolean }): Promise<AcquiredToken>;
}
