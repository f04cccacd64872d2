export * from './crypto/index.ts';
export { ERRORS, type ErrorCode, isMedvaultError, MedvaultError } from './errors.ts';
