import { execFile } from 'node:child_process';

/** What Python's email package (a MIME parser no one here wrote) reads from a message. */
export interface ParsedMime {
  subject: string;
  from: string;
  to: string;
  cc: string | null;
  bcc: string | null;
  messageId: string | null;
  date: string | null;
  text: string | null;
  html: string | null;
  attachments: Array<{ filename: string | null; contentType: string; size: number; sha256: string; cid: string | null }>;
}

const SCRIPT = `
import sys, json, hashlib
from email import policy
from email.parser import BytesParser
m = BytesParser(policy=policy.default).parse(sys.stdin.buffer)
def body(kind):
    p = m.get_body(preferencelist=(kind,))
    return p.get_content() if p is not None else None
atts = []
for part in m.walk():
    if part.is_multipart() or part.get_content_disposition() not in ('attachment', 'inline'):
        continue
    if part.get_content_disposition() == 'inline' and part.get_filename() is None:
        continue
    data = part.get_payload(decode=True) or b''
    atts.append({'filename': part.get_filename(), 'contentType': part.get_content_type(), 'size': len(data), 'sha256': hashlib.sha256(data).hexdigest(), 'cid': part.get('Content-ID')})
print(json.dumps({'subject': str(m['subject']), 'from': str(m['from']), 'to': str(m['to']), 'cc': m['cc'] and str(m['cc']), 'bcc': m['bcc'] and str(m['bcc']),
  'messageId': m['message-id'], 'date': m['date'] and str(m['date']), 'text': body('plain'), 'html': body('html'), 'attachments': atts}))
`;

/** Parses raw MIME with Python's `email` package. */
export function parseWithPython(raw: Buffer): Promise<ParsedMime> {
  return new Promise((resolve, reject) => {
    const child = execFile('python3', ['-c', SCRIPT], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`python3 could not parse the message: ${stderr}`));
      else resolve(JSON.parse(stdout) as ParsedMime);
    });
    child.stdin!.end(raw);
  });
}
