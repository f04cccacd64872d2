#!/usr/bin/env node
import { main } from '../dist/services/cli.js';

process.exitCode = await main(process.argv);
