export {
  AgeDecryptor,
  AgeEncryptor,
  buildHeader,
  coreTransform,
  createDecryptStream,
  createEncryptStream,
  createPayloadDecryptStream,
  type DecryptOptions,
  decrypt,
  type EncryptOptions,
  encrypt,
  generateFileKey,
  openHeader,
  PayloadDecryptor,
  rewrapHeader,
  type StreamCore,
  splitAgeFile,
  unwrapFileKey,
} from './age.ts';
export { ArmorDecoder, ArmorEncoder } from './armor.ts';
export { keyFingerprint, SigningKey, verifySignature } from './ed25519.ts';
export {
  DEFAULT_LIMITS,
  type Header,
  type HeaderLimits,
  type Identity,
  parseHeader,
  type Recipient,
  type Stanza,
  serializeHeader,
} from './header.ts';
export {
  EMPTY_ROOT,
  HASH_LENGTH,
  leafHash,
  MerkleTree,
  nodeHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
export { ScryptIdentity, ScryptRecipient } from './scrypt.ts';
export { CHUNK_SIZE, PayloadOpener, PayloadSealer } from './stream.ts';
export { parseIdentityFile, parseRecipientsFile, X25519Identity, X25519Recipient } from './x25519.ts';
