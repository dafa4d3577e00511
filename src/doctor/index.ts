export { runDoctor, doctorReportForConfigError, toDoctorJson, type DoctorJson, type DoctorJsonCheck } from './run.js';
export { CHECKS } from './checks.js';
export { SmtpProbe, ProbeError, type SmtpReply } from './smtp-probe.js';
export type { Check, CheckResult, CheckStatus, CheckOutcome, DoctorContext, DoctorOptions, DoctorReport, PausedMailbox } from './types.js';
export {
  SETUPS,
  SETUP_FLOWS,
  SP_OBJECT_ID,
  adminSteps,
  placeholderInput,
  setupName,
  renderAdminStepsText,
  renderAdminStepsMarkdown,
  docBlock,
  docMarkers,
  type Setup,
  type AdminStep,
  type AdminStepsInput,
  type CommandBlock,
} from './admin-steps.js';
