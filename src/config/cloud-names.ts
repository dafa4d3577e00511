/** Microsoft's clouds (shared/M365.md, Endpoints) plus the local sandbox. */
export const CLOUD_NAMES = ['global', 'usgov', 'usgov-dod', 'china', 'sandbox'] as const;
export type CloudName = (typeof CLOUD_NAMES)[number];
