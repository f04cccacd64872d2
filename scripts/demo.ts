/**
 * npm run demo: the main job on the embedded defaults (see services/demo.ts;
 * `medvault demo` runs the same). MEDVAULT_DEMO_MIB sets the study's size.
 */
import { runDemo } from '../services/demo.ts';

await runDemo({ sizeMiB: Number(process.env.MEDVAULT_DEMO_MIB ?? 128) });
