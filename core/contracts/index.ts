/**
 * The only module plugins import from camtap core. Types here are the plugin contracts
 * and the packet/stream/record types the engine and plugins share.
 */
export * from './frame.js';
export * from './filter.js';
export * from './plugin.js';
export * from './camera-profile.js';
export * from './logger.js';
export * from './records.js';
export { CamtapError, isCamtapError } from '../errors.js';
export type { ErrorCode } from '../errors.js';
