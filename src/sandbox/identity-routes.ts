import type { FastifyPluginCallback } from 'fastify';
import type { SandboxState } from './state.js';
import type { TokenIssuer } from './tokens.js';

export interface IdentityRoutesOptions {
  state: SandboxState;
  issuer: TokenIssuer;
  /** `https://localhost:PORT`, known once the server listens. */
  baseUrl: () => string;
}

/** The identity platform's endpoints (discovery, JWKS, token, devicecode, authorize). */
export const identityRoutes: FastifyPluginCallback<IdentityRoutesOptions> = (_app, _opts, done) => {
  done();
};
