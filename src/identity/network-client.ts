import { request as httpsRequest, type Agent } from 'node:https';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node';

export interface NetworkClientOptions {
  /** Extra CA certificates (PEM) to trust besides the system's: the sandbox's or a TLS-inspecting proxy's. */
  ca?: string[];
  /** `http://proxy:3128`-style HTTPS proxy (CONNECT tunnel); default none. */
  httpsProxy?: string;
  /** Host names (and their subdomains) that bypass the proxy, as in NO_PROXY. */
  noProxy?: string[];
  timeoutMs?: number;
}

/**
 * One TLS context (TLS 1.2 or newer) trusting Node's root CAs and `extraCas`, built once and handed
 * to every connection as `secureContext`. Passing `ca` instead makes Node parse all ~140 root
 * certificates again for each connection (tens of milliseconds of CPU on every connect).
 */
export function trustingContext(extraCas: readonly string[]): SecureContext {
  // Node replaces the default trust store when `ca` is given: keep the system's roots beside the extras.
  return createSecureContext({ minVersion: 'TLSv1.2', ...(extraCas.length > 0 ? { ca: [...extraCas, ...rootCertificates] } : {}) });
}

/** The body of an identity platform response, parsed as JSON when possible. */
type Body = Record<string, unknown> | string;

/**
 * MSAL's network module over node:https, so that relay365 can trust an extra CA and use a proxy for
 * its own requests only, without process-wide TLS settings (MSAL Node takes a custom `system.networkClient` for this).
 */
export class HttpsNetworkClient implements INetworkModule {
  private readonly secureContext: SecureContext | undefined;
  private readonly proxyAgent: Agent | undefined;
  private readonly noProxy: string[];
  private readonly timeoutMs: number;
  private readonly deviceCodeErrors = new Map<string, string>();

  constructor(options: NetworkClientOptions = {}) {
    this.secureContext = options.ca && options.ca.length > 0 ? trustingContext(options.ca) : undefined;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.noProxy = (options.noProxy ?? []).map((h) => h.toLowerCase().replace(/^\./, ''));
    this.proxyAgent = options.httpsProxy ? new HttpsProxyAgent(options.httpsProxy) : undefined;
  }

  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
    return this.send<T>('GET', url, options, timeout);
  }

  sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const answer = this.send<T>('POST', url, options);
    const deviceCode = deviceCodeOf(options?.body);
    if (deviceCode === undefined) return answer;
    return answer.then((res) => {
      // MSAL's device code poll keeps only `error` of a refusal (post_request_failed: invalid_grant),
      // dropping the AADSTS code and description a Conditional Access or Security Defaults block carries.
      // Kept here for the sign-in to explain (deviceCodeError), the few that are pending at once.
      const body = res.body as { error?: unknown; error_description?: unknown };
      if (res.status >= 400 && typeof body.error_description === 'string' && body.error !== 'authorization_pending' && body.error !== 'slow_down') {
        this.deviceCodeErrors.set(deviceCode, body.error_description);
        if (this.deviceCodeErrors.size > 16) this.deviceCodeErrors.delete(this.deviceCodeErrors.keys().next().value!);
      }
      return res;
    });
  }

  /** The identity platform's `error_description` for a device code whose poll it refused (see sendPostRequestAsync). */
  deviceCodeError(deviceCode: string): string | undefined {
    return this.deviceCodeErrors.get(deviceCode);
  }

  /** A plain request for other callers (Graph), with the same trust and proxy settings. */
  send<T = Body>(method: string, url: string, options: NetworkRequestOptions & { bodyBuffer?: Buffer } = {}, timeout?: number): Promise<NetworkResponse<T>> {
    const target = new URL(url);
    const useProxy =
      this.proxyAgent !== undefined && !this.noProxy.some((h) => target.hostname.toLowerCase() === h || target.hostname.toLowerCase().endsWith(`.${h}`));
    const body = options.bodyBuffer ?? (options.body === undefined ? undefined : Buffer.from(options.body));
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        target,
        {
          method,
          headers: { ...options.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
          // Through a proxy the TLS session to the target runs inside the tunnel, with these same options.
          ...(useProxy ? { agent: this.proxyAgent } : {}),
          ...(this.secureContext ? { secureContext: this.secureContext } : {}),
          minVersion: 'TLSv1.2',
          // Explicit, so that NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment (set for some other tool)
          // cannot turn off the certificate check of the token endpoint and Graph: Node reads that
          // variable only when the option is absent. The SMTP side sets it explicitly too.
          rejectUnauthorized: true,
          timeout: timeout ?? this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text.length > 0 ? JSON.parse(text) : {};
            } catch {
              // Not JSON (an HTML error page from a proxy, say): MSAL reports it as a server error.
            }
            const headers: Record<string, string> = {};
            for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
            resolve({ status: res.statusCode ?? 0, headers, body: parsed as T });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from ${target.host} within ${timeout ?? this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}

/** The device code of a device code token poll (grant type `device_code`), if `body` is one. */
function deviceCodeOf(body: string | undefined): string | undefined {
  if (body === undefined || !body.includes('device_code')) return undefined;
  const form = new URLSearchParams(body);
  // RFC 8628 names the grant urn:ietf:params:oauth:grant-type:device_code; MSAL sends the short `device_code`, which Entra takes.
  const grant = form.get('grant_type');
  return grant === 'device_code' || grant === 'urn:ietf:params:oauth:grant-type:device_code' ? (form.get('device_code') ?? undefined) : undefined;
}
