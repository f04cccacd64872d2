/** Free TCP ports on 127.0.0.1, found by binding port 0 (the same helper `consortium up` uses). */
export { freePort } from '../../services/cli/local-consortium.ts';
