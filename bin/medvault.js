#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_TOP_PAD_=16777216 node
// glibc's heap kept, not trimmed, under node:crypto's chunk churn: see scripts/node.
import { main } from '../dist/services/cli/main.js';

process.exitCode = await main(process.argv);
