/** Microsoft's clouds (Microsoft Learn, "National cloud deployments" and "POP, IMAP, and SMTP settings for Outlook.com") plus the local sandbox. */
export const CLOUD_NAMES = ['global', 'usgov', 'usgov-dod', 'china', 'sandbox'] as const;
export type CloudName = (typeof CLOUD_NAMES)[number];
