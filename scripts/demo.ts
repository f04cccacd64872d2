/**
 * npm run demo: the main job on the embedded defaults (see services/cli/demo.ts;
 * `medvault demo` runs the same). MEDVAULT_DEMO_MIB sets the study's size.
 */

import { enableChunkReclaim } from '../crypto/reclaim.ts';
import { runDemo } from '../services/cli/demo.ts';

enableChunkReclaim(); // a program, as `medvault demo` is
await runDemo({ sizeMiB: Number(process.env.MEDVAULT_DEMO_MIB ?? 128) });
