/**
 * Certificates the suite makes with the openssl CLI: a CA, and leaf
 * certificates it signs for 127.0.0.1 (server and client use), each in its
 * own PEM files. EC P-256, two days: made per suite in a temp directory.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface TestCa extends CertFiles {
  dir: string;
  /** A certificate and key for `name`, signed by this CA, valid for 127.0.0.1 and localhost. */
  issue(name: string): CertFiles;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A new CA (named `name`) in a temp directory. */
export function makeCa(name = 'medvault-test-ca'): TestCa {
  const dir = tempDir('medvault-certs-');
  const ca = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key') };
  openssl(['req', '-x509', ...EC, '-keyout', ca.key, '-out', ca.cert, '-days', '2', '-subj', `/CN=${name}`]);
  return {
    dir,
    ...ca,
    issue(leaf: string): CertFiles {
      const files = { cert: join(dir, `${leaf}.pem`), key: join(dir, `${leaf}.key`) };
      const csr = join(dir, `${leaf}.csr`);
      const ext = join(dir, `${leaf}.ext`);
      writeFileSync(
        ext,
        'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n',
      );
      openssl(['req', ...EC, '-keyout', files.key, '-out', csr, '-subj', `/CN=${leaf}`]);
      openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca.cert,
        '-CAkey',
        ca.key,
        '-CAcreateserial',
        '-out',
        files.cert,
        '-days',
        '2',
        '-extfile',
        ext,
      ]);
      return files;
    },
  };
}

/** The PEM text of a file. */
export const pem = (path: string) => readFileSync(path);
