export { createSmtpIngress, type SmtpCertificate, type SmtpIngress, type SmtpIngressDeps, type SmtpListenerAddress } from './ingress.js';
export { hashPassword, verifyPassword, PasswordChecker } from './password.js';
export {
  loadTlsIdentity,
  createSelfSignedCertificate,
  certificateNames,
  listenerAddressNames,
  subjectAltNameEntries,
  type TlsIdentity,
  type CertificatePair,
} from './self-signed.js';
export { REPLIES } from './replies.js';
