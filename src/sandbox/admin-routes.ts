import type { FastifyPluginCallback } from 'fastify';
import type { SandboxState } from './state.js';

/** `/sandbox/*`: what arrived, the counters, and run-time changes to the scenario. */
export const adminRoutes: FastifyPluginCallback<{ state: SandboxState }> = (_app, _opts, done) => {
  done();
};
