import nodemailer from 'nodemailer';
import type { Sandbox } from '../../src/sandbox/index.js';

/** Logs in to the sandbox's SMTP submission with XOAUTH2 through nodemailer; resolves true or rejects with the reply. */
export async function smtpAuthWorks(sandbox: Sandbox, user: string, accessToken: string): Promise<boolean> {
  const transport = nodemailer.createTransport({
    host: sandbox.smtpHost,
    port: sandbox.smtpPort,
    secure: false,
    requireTLS: true,
    tls: { ca: sandbox.caPem, servername: 'localhost' },
    auth: { type: 'OAuth2', user, accessToken },
  });
  try {
    return await transport.verify();
  } finally {
    transport.close();
  }
}

/** Sends one small message as `user` with the token; returns nodemailer's info (the server's reply in `response`). */
export async function sendWithToken(
  sandbox: Sandbox,
  user: string,
  accessToken: string,
  to = 'someone@example.net',
): Promise<{ response: string; messageId: string }> {
  const transport = nodemailer.createTransport({
    host: sandbox.smtpHost,
    port: sandbox.smtpPort,
    secure: false,
    requireTLS: true,
    tls: { ca: sandbox.caPem, servername: 'localhost' },
    auth: { type: 'OAuth2', user, accessToken },
  });
  try {
    const info = (await transport.sendMail({ from: user, to, subject: 'test', text: 'hello' })) as { response: string; messageId: string };
    return info;
  } finally {
    transport.close();
  }
}
