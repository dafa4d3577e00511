export type { ReplyClass, Explanation } from './types.js';
export { AADSTS_CATALOGUE, explainAadsts, findAadstsCode } from './aadsts.js';
