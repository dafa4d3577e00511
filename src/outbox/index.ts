export * from './types.js';
export { Router, type Route } from './routing.js';
