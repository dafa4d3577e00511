export { createSmtpIngress, type SmtpIngress, type SmtpIngressDeps, type SmtpListenerAddress } from './ingress.js';
export { hashPassword, verifyPassword, PasswordChecker } from './password.js';
export { loadTlsIdentity, createSelfSignedCertificate, type TlsIdentity, type CertificatePair } from './self-signed.js';
export { REPLIES } from './replies.js';
