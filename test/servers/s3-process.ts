/**
 * The test S3 server as its own process, so a test can kill it with SIGKILL:
 * s3-process.ts DIRECTORY SECRET prints {"port":…} when ready.
 */
import { startS3Server } from './s3.ts';

const [directory, secretKey] = process.argv.slice(2);
const server = await startS3Server({ directory: directory as string, secretKey: secretKey as string });
process.stdout.write(`${JSON.stringify({ port: server.port, bucket: server.bucket, accessKey: server.accessKey })}\n`);
