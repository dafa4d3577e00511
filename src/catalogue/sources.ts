/**
 * The public pages that the catalogue's rows (`doc`) and the transports' limits (`source`) cite, each
 * once: where Microsoft moves a page, one line changes. Keys name the page, not the row that cites it.
 */
export const SOURCES = {
  /** Microsoft identity platform: AADSTS error codes. */
  aadstsCodes: 'https://learn.microsoft.com/entra/identity-platform/reference-error-codes',
  /** Access tokens: their claims (`aud`, `roles`, `scp`). */
  accessTokens: 'https://learn.microsoft.com/entra/identity-platform/access-tokens',
  /** Granting tenant-wide admin consent to an application. */
  adminConsent: 'https://learn.microsoft.com/entra/identity/enterprise-apps/grant-admin-consent',
  /** Replies that Exchange administrators pasted, gathered in shared/M365.md (no Microsoft page shows them). */
  adminReports: 'shared/M365.md reply catalogue (as reported by admins)',
  /** Role Based Access Control for Applications in Exchange Online. */
  applicationRbac: 'https://learn.microsoft.com/exchange/permissions-exo/application-rbac',
  /** Authenticated client SMTP submission (SMTP AUTH) in Exchange Online. */
  clientSubmission: 'https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission',
  /** Continuous error throttling of SMTP AUTH submissions. */
  continuousErrorThrottling: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions',
  /** Setting up a multifunction device or application to send email using Microsoft 365. */
  deviceSetup:
    'https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365',
  /** Exchange Online limits (service description): sending and receiving limits. */
  exchangeLimits: 'https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits',
  /** Microsoft Graph error responses. */
  graphErrors: 'https://learn.microsoft.com/graph/errors',
  /** Attaching large files to Outlook messages (Graph upload sessions). */
  graphLargeAttachments: 'https://learn.microsoft.com/graph/outlook-large-attachments',
  /** Sending Outlook messages in MIME format (Graph). */
  graphMime: 'https://learn.microsoft.com/graph/outlook-send-mime-message',
  /** "Authorization_RequestDenied" and tokens without permissions when calling Graph. */
  graphNoPermissions: 'https://learn.microsoft.com/troubleshoot/entra/entra-id/users-groups-entra-apis/error-call-me-endpoint-microsoft-graph',
  /** Graph `user: sendMail`. */
  graphSendMail: 'https://learn.microsoft.com/graph/api/user-sendmail',
  /** Graph throttling limits of the Outlook service. */
  graphThrottling: 'https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits',
  /** Email non-delivery reports and SMTP errors in Exchange Online. */
  ndr: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online',
  /** Fixing NDR error codes 5.7.700 through 5.7.750. */
  ndr7xx: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/fix-error-code-5-7-700-through-5-7-750',
  /** The restricted-sender NDR text as Microsoft's own documentation feedback thread quotes it. */
  restrictedSender: 'https://github.com/MicrosoftDocs/OfficeDocs-o365seccomp/issues/643',
  /** Authenticating an IMAP, POP or SMTP connection using OAuth. */
  smtpOAuth: 'https://learn.microsoft.com/exchange/client-developers/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth',
  /** SMTP submission improvements (troubleshooting). */
  smtpSubmission: 'https://learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements',
} as const;
