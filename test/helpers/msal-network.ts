import { ProtocolMode, type Configuration, type INetworkModule, type NetworkRequestOptions, type NetworkResponse } from '@azure/msal-node';
import { httpsRequest } from './https.js';

/**
 * MSAL's network module over node:https trusting the sandbox CA, so MSAL talks to the sandbox
 * unmodified and without process-wide TLS settings. A test-only copy: relay365's own client lives in
 * src/identity.
 */
export function sandboxNetworkClient(caPem: string): INetworkModule {
  async function send<T>(method: 'GET' | 'POST', url: string, options: NetworkRequestOptions = {}): Promise<NetworkResponse<T>> {
    const res = await httpsRequest(url, { method, ca: caPem, headers: options.headers ?? {}, ...(options.body !== undefined ? { body: options.body } : {}) });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers)) {
      if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
    }
    let body: unknown;
    try {
      body = JSON.parse(res.text);
    } catch {
      // MSAL reads error fields from the body; a non-JSON answer (a proxy's HTML page) gets its text.
      body = { error: 'non_json_response', error_description: res.text.slice(0, 500) };
    }
    return { status: res.status, headers, body: body as T };
  }
  return {
    sendGetRequestAsync: <T>(url: string, options?: NetworkRequestOptions) => send<T>('GET', url, options),
    sendPostRequestAsync: <T>(url: string, options?: NetworkRequestOptions) => send<T>('POST', url, options),
  };
}

/** MSAL configuration for a sandbox tenant: the setup DESIGN.md records as working with MSAL Node 7. */
export function msalSandboxConfig(input: {
  baseUrl: string;
  caPem: string;
  tenant: string;
  clientId: string;
  auth?: Partial<Configuration['auth']>;
}): Configuration {
  const host = new URL(input.baseUrl).host;
  return {
    auth: {
      clientId: input.clientId,
      authority: `${input.baseUrl}/${input.tenant}`,
      knownAuthorities: [host],
      ...input.auth,
    },
    // MSAL Node 7 keeps protocolMode under `system`; OIDC mode reads the authority's discovery document.
    system: { protocolMode: ProtocolMode.OIDC, networkClient: sandboxNetworkClient(input.caPem) },
  };
}
