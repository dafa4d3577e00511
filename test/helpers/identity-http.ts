import { httpsRequest } from './https.js';

/** What {@link postForm} answered. */
export type FormResponse = Awaited<ReturnType<typeof httpsRequest>>;

/** POSTs `fields` as `application/x-www-form-urlencoded`, the way OAuth clients talk to a token endpoint. */
export function postForm(url: string, fields: Record<string, string>, options: { ca: string; headers?: Record<string, string> }): Promise<FormResponse> {
  return httpsRequest(url, {
    method: 'POST',
    ca: options.ca,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
    body: new URLSearchParams(fields).toString(),
  });
}
