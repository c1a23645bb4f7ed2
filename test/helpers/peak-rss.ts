/**
 * Preloaded into a child (node --import) by tests that bound memory: at exit, the process's peak resident
 * set (process.resourceUsage().maxRSS, in KiB) is written to the file named by VIT_TEST_PEAK_FILE.
 */
import { writeFileSync } from 'node:fs';

const file = process.env.VIT_TEST_PEAK_FILE;
if (file) process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS)));
