/**
 * The one admission pipeline: every front door (SMTP DATA, HTTP JSON and MIME, `relay365 send`, the
 * library) hands it a message read in full and who submitted it, and gets one {@link Verdict}.
 */
export {
  MAX_SCHEDULE_DAYS,
  createAdmission,
  scheduleProblem,
  type Acceptance,
  type Admission,
  type AdmissionDeps,
  type Submission,
  type Submitter,
  type Verdict,
} from './pipeline.js';
export { ADMISSION_REPLIES, type Refusal, type RefusalReason } from './refusals.js';
export { SenderPolicy, addressKey, asciiAddress, asciiDomain } from './sender-policy.js';
