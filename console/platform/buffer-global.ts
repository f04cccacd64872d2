/** Injected into every module of the console bundle: the shared modules use Node's Buffer. */
import { Buffer } from 'buffer';

export { Buffer };
