#!/usr/bin/env node
import { main } from '../dist/services/cli/main.js';

process.exitCode = await main(process.argv);
