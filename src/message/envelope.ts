/** The SMTP envelope: MAIL FROM and RCPT TO, independent of the headers. */
export interface Envelope {
  from: string;
  to: string[];
}
