#!/usr/bin/env python3
"""An independent verifier of medvault's receipts, checkpoints and erasure certificates.

Written from docs/formats.md alone (not from medvault's code): Python's standard library,
and pyca/cryptography for Ed25519. Exit status 0: valid; 1: invalid (the reason on stderr);
2: usage.

  medvault_verify.py receipt FILE [--trust NODE-ID ...] [--keys HISTORY]
  medvault_verify.py checkpoint FILE [--trust NODE-ID ...] [--keys HISTORY] [--quorum N]
  medvault_verify.py certificate FILE [--trust NODE-ID ...] [--keys HISTORY]
  medvault_verify.py vectors FILE          (test/formats/vectors/formats.json)
  medvault_verify.py sign-request KEYFILE METHOD PATH [BODYFILE]
      prints, as JSON, the headers that sign a request with a member key file
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Invalid(Exception):
    """The document does not verify; the message says what failed."""


HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def canonical(value):
    """RFC 8785 for medvault's documents (ASCII keys, strings, integers, booleans, null)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256(data):
    return hashlib.sha256(data).digest()


def unbase64(text, length, what):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError) as err:
        raise Invalid(f"{what}: not base64") from err
    if base64.b64encode(raw).decode() != text or len(raw) != length:
        raise Invalid(f"{what}: not a canonical base64 value of {length} bytes")
    return raw


def key_id(public_key):
    return hashlib.sha256(b"medvault/ed25519" + public_key).hexdigest()[:32]


def check_signature(signer, signer_key, message, signature, what):
    """The key's id must be `signer`, and the Ed25519 signature must verify."""
    key = unbase64(signer_key, 32, f"{what}: key")
    if key_id(key) != signer:
        raise Invalid(f"{what}: {signer} is not the id of its key")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(unbase64(signature, 64, f"{what}: signature"), message)
    except InvalidSignature as err:
        raise Invalid(f"{what}: the signature does not verify") from err


class Trusted:
    """Trusted node keys, each with the block heights it signs at, followed through node key
    hand-overs (docs/formats.md, "Node key history"): a list of ids to begin with."""

    def __init__(self, ids):
        self.keys = {i: [0, float("inf"), i] for i in ids}  # id: [from, until, root]

    def allows(self, signer, height=None):
        key = self.keys.get(signer)
        return key is not None and (height is None or key[0] <= height <= key[1])

    def follow(self, links):
        """links: (node, successor, height) hand-overs, followed earliest first until nothing changes."""
        changed = True
        while changed:
            changed = False
            for node, successor, height in sorted(links, key=lambda link: link[2]):
                old, new = self.keys.get(node), self.keys.get(successor)
                if old is None and new is not None:  # backward: the trusted successor accepted it
                    self.keys[node] = [0, height, new[2]]
                    new[0] = max(new[0], height + 1)
                    changed = True
                elif old is not None and old[0] <= height <= old[1]:  # forward
                    if old[1] != height:
                        old[1], changed = height, True
                    if new is None:
                        self.keys[successor], changed = [height + 1, float("inf"), old[2]], True
                    elif new[0] <= height:
                        new[0], changed = height + 1, True


def as_trusted(trusted):
    return trusted if trusted is None or isinstance(trusted, Trusted) else Trusted(trusted)


def trusted_signer(signer, trusted, what, height=None):
    trusted = as_trusted(trusted)
    if trusted is not None and not trusted.allows(signer, height):
        raise Invalid(f"{what}: signed by {signer}, which is not a trusted node key" + ("" if height is None else f" at block {height}"))


def key_link(event, signer, height):
    """The hand-over a node.key event in a block signed by `signer` makes, or None."""
    if event.get("type") != "node.key" or event.get("node") != signer or event.get("successor") == signer:
        return None
    key = bytes.fromhex(event["signingKey"])
    if len(key) != 32 or key_id(key) != event["successor"]:
        return None
    message = f"medvault-node-key-v1\n{signer}\n{event['successor']}\n{event['recipient']}".encode()
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(bytes.fromhex(event["proof"]), message)
    except InvalidSignature:
        return None
    return (signer, event["successor"], height)


def follow_history(ids, history):
    """The trusted ids followed through a key history: node.key receipts (or a node's GET /v1/node answer)."""
    entries = history.get("keyHistory") if isinstance(history, dict) else history
    if not isinstance(entries, list):
        raise Invalid("a key history is a list of node.key receipts")
    links = []
    for i, receipt in enumerate(entries):
        event = verify_receipt(receipt, None, f"key history entry {i}")
        link = key_link(event, receipt["block"]["signer"], receipt["block"]["height"])
        if link is None:
            raise Invalid(f"key history entry {i}: not a node key hand-over signed by the key it replaces")
        links.append(link)
    trusted = Trusted(ids)
    trusted.follow(links)
    return trusted


# Merkle trees (RFC 9162 section 2.1).

def leaf_hash(event):
    return sha256(b"\x00" + canonical(event))


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def merkle_root(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_holds(index, size, leaf, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        else:
            r = node_hash(r, p)
        fn, sn = fn // 2, sn // 2
    return sn == 0 and r == root


# Blocks and receipts.

HEADER_FIELDS = {"v", "height", "prev", "root", "count", "time", "signer", "signerKey", "sig"}


def check_header(header, trusted, what="block"):
    if not isinstance(header, dict) or set(header) != HEADER_FIELDS or header["v"] != 1:
        raise Invalid(f"{what}: not a block header")
    unsigned = {k: v for k, v in header.items() if k != "sig"}
    check_signature(header["signer"], header["signerKey"], b"medvault/block/v1\n" + canonical(unsigned), header["sig"], what)
    trusted_signer(header["signer"], trusted, what, header["height"])


def block_hash(header):
    return hashlib.sha256(canonical(header)).hexdigest()


def check_block(block, previous, trusted):
    header, events = block["header"], block["events"]
    what = f"block {header.get('height')}"
    if header["height"] != (previous["height"] + 1 if previous else 0):
        raise Invalid(f"{what}: unexpected height")
    if header["prev"] != (block_hash(previous) if previous else "0" * 64):
        raise Invalid(f"{what}: it does not link to the block before")
    if header["count"] != len(events) or merkle_root([leaf_hash(e) for e in events]).hex() != header["root"]:
        raise Invalid(f"{what}: its root or count does not match its events")
    check_header(header, trusted, what)


def verify_receipt(receipt, trusted=None, what="receipt"):
    if not isinstance(receipt, dict) or set(receipt) != {"v", "event", "leafIndex", "auditPath", "block"} or receipt["v"] != 1:
        raise Invalid(f"{what}: not a receipt")
    path = []
    for step in receipt["auditPath"]:
        if not isinstance(step, str) or not HEX64.match(step):
            raise Invalid(f"{what}: a malformed audit path")
        path.append(bytes.fromhex(step))
    block = receipt["block"]
    check_header(block, trusted, what)
    if not inclusion_holds(receipt["leafIndex"], block["count"], leaf_hash(receipt["event"]), path, bytes.fromhex(block["root"])):
        raise Invalid(f"{what}: the event is not in the block (the audit path does not lead to its root)")
    return receipt["event"]


# Checkpoints.

def verify_checkpoint(checkpoint, trusted=None, quorum=None):
    if checkpoint.get("type") != "medvault.ledger-checkpoint" or checkpoint.get("v") != 1:
        raise Invalid("not a checkpoint")
    body = {k: checkpoint[k] for k in ("v", "type", "height", "blockHash")}
    signers = []
    for s in checkpoint["signatures"]:
        signer = {k: s[k] for k in ("signer", "signerKey", "at")}
        message = b"medvault-ledger-checkpoint-v1\n" + canonical({"checkpoint": body, "signer": signer})
        check_signature(s["signer"], s["signerKey"], message, s["sig"], f"checkpoint signature by {s['signer']}")
        trusted_signer(s["signer"], trusted, "checkpoint", checkpoint["height"])
        if s["signer"] in signers:
            raise Invalid(f"checkpoint: {s['signer']} signed twice")
        signers.append(s["signer"])
    if quorum is not None and len(signers) < quorum:
        raise Invalid(f"checkpoint: {len(signers)} signatures, fewer than {quorum}")
    return signers


# Erasure certificates.

def verify_certificate(cert, trusted=None, part=False):
    if cert.get("type") != "medvault.erasure-certificate" or cert.get("v") != 1:
        raise Invalid("not an erasure certificate")
    who = f"certificate by {cert.get('signer')}"
    unsigned = {k: v for k, v in cert.items() if k not in ("sig", "parts", "cosignatures")}
    check_signature(cert["signer"], cert["signerKey"], b"medvault-erasure-certificate-v1\n" + canonical(unsigned), cert["sig"], who)
    trusted_signer(cert["signer"], trusted, who)
    filed = verify_receipt(cert["filed"], trusted, f"{who}: filing")
    if filed.get("type") != "erasure.filed" or filed.get("requestId") != cert["requestId"] or filed.get("dpo") != cert["dpo"]:
        raise Invalid(f"{who}: its filing receipt is for another request")
    scope = cert["scope"]
    record_scope = "recordId" in scope
    target = scope.get("recordId") or scope.get("subjectCommitment") or scope.get("subject")
    if filed.get("scope") != ("record" if record_scope else "subject") or filed.get("target") != target:
        raise Invalid(f"{who}: its scope is not the one filed")
    kms = cert["kms"]
    if not record_scope and cert["records"] and kms is None:
        raise Invalid(f"{who}: records of the subject erased, but no key destroyed")
    for record in cert["records"]:
        rid = record["recordId"]
        if record_scope and rid != target:
            raise Invalid(f"{who}: a record-scope certificate lists another record")
        tomb = verify_receipt(record["tombstone"], trusted, f"{who}: record {rid} tombstone")
        if (tomb.get("type"), tomb.get("recordId"), tomb.get("ciphertextHash"), tomb.get("requestId")) != (
            "record.erased", rid, record["ciphertextHash"], cert["requestId"]):
            raise Invalid(f"{who}: record {rid}: its tombstone is for another erasure")
        if "created" in record:
            created = verify_receipt(record["created"], trusted, f"{who}: record {rid} creation")
            if created.get("type") != "record.created" or created.get("recordId") != rid:
                raise Invalid(f"{who}: record {rid}: its creation receipt is for another record")
            if kms is not None and "custodian" in created and created["custodian"] != kms["keyId"]:
                raise Invalid(f"{who}: record {rid} was wrapped to another key than the one destroyed")
        elif not record_scope:
            raise Invalid(f"{who}: record {rid}: no creation receipt to check the destroyed key against")
    if part:
        if "parts" in cert or "consortium" in cert:
            raise Invalid(f"{who}: a part has parts of its own")
        return {"records": len(cert["records"])}
    executed = {k: v for k, v in cert.items() if k not in ("parts", "cosignatures")}
    cosigners = []
    for c in cert.get("cosignatures", []):
        cosigner = {k: c[k] for k in ("signer", "signerKey", "at", "confirmed")}
        if c["signer"] == cert["signer"] or c["signer"] in cosigners:
            raise Invalid(f"{who}: cosignature by {c['signer']}: not a separate node, or twice")
        message = b"medvault-erasure-cosignature-v1\n" + canonical({"certificate": executed, "cosigner": cosigner})
        check_signature(c["signer"], c["signerKey"], message, c["sig"], f"cosignature by {c['signer']}")
        cosigners.append(c["signer"])
    consortium = cert.get("consortium", [])
    if cert["signer"] in consortium:
        raise Invalid(f"{who}: the executing node is listed as its own peer")
    records = len(cert["records"])
    parts = []
    for p in cert.get("parts", []):
        records += verify_certificate(p, trusted, part=True)["records"]
        if p["requestId"] != cert["requestId"] or canonical(p["filed"]) != canonical(cert["filed"]):
            raise Invalid(f"the part of {p['signer']} is for another request")
        if p["signer"] not in consortium or p["signer"] in parts:
            raise Invalid(f"a part by {p['signer']}, not one of the consortium's other nodes")
        parts.append(p["signer"])
    missing = [n for n in consortium if n not in cosigners or n not in parts]
    return {"records": records, "cosigners": cosigners, "complete": not missing, "missing": missing}


# The vectors of docs/formats.md.

def check_vectors(v):
    for name, k in v["keys"].items():
        public = Ed25519PrivateKey.from_private_bytes(unbase64(k["seed"], 32, name)).public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        if base64.b64encode(raw).decode() != k["publicKey"] or key_id(raw) != k["id"]:
            raise Invalid(f"keys.{name}: the seed, key and id do not agree")
    keys = v["keys"]
    r = v["request"]
    if hashlib.sha256(r["body"].encode()).hexdigest() != r["bodyHash"]:
        raise Invalid("request: the body hash")
    message = "\n".join(["medvault-request-v1", r["method"].upper(), r["path"], r["time"], r["nonce"], r["bodyHash"]])
    if message != r["message"]:
        raise Invalid("request: the signed message")
    check_signature(keys["member"]["id"], keys["member"]["publicKey"], message.encode(), r["signature"], "request")
    upload = "\n".join(["medvault-body-v1", r["signature"], r["upload"]["bodySha256"]])
    if upload != r["upload"]["message"]:
        raise Invalid("request: the upload trailer's message")
    check_signature(keys["member"]["id"], keys["member"]["publicKey"], upload.encode(), r["upload"]["signature"], "upload trailer")
    forward = "\n".join(["medvault-forward-v1", keys["node"]["id"], keys["member"]["id"], r["signature"]])
    if forward != r["forward"]["message"]:
        raise Invalid("request: the forwarding message")
    check_signature(keys["node"]["id"], keys["node"]["publicKey"], forward.encode(), r["forward"]["signature"], "forwarding")

    p = v["pseudonym"]
    key = bytes.fromhex(p["key"])
    if hmac.new(key, ("medvault-subject-v1\n" + p["identifier"]).encode(), hashlib.sha256).hexdigest() != p["pseudonym"]:
        raise Invalid("pseudonym")
    commitment = hashlib.sha256(f"medvault-erasure-target-v1\n{p['requestId']}\n{p['pseudonym']}".encode()).hexdigest()
    if commitment != p["commitment"]:
        raise Invalid("pseudonym: the erasure commitment")

    nodes = [keys["node"]["id"], keys["peer"]["id"]]
    previous = None
    for b in v["blocks"]:
        if [canonical(e).decode() for e in b["events"]] != b["eventsJson"]:
            raise Invalid(f"block {b['header']['height']}: canonical JSON of its events")
        unsigned = {k: x for k, x in b["header"].items() if k != "sig"}
        if "medvault/block/v1\n" + canonical(unsigned).decode() != b["signedText"] or block_hash(b["header"]) != b["hash"]:
            raise Invalid(f"block {b['header']['height']}: its signed text or hash")
        check_block(b, previous, nodes)
        previous = b["header"]
    if [leaf_hash(e).hex() for e in v["blocks"][0]["events"]] != v["leaves"]:
        raise Invalid("leaves")
    verify_receipt(v["receipt"], nodes)
    verify_checkpoint(v["checkpoint"], nodes, quorum=2)
    if v["checkpoint"]["blockHash"] != v["blocks"][1]["hash"]:
        raise Invalid("checkpoint: not of block 1")
    if not verify_certificate(v["certificate"], nodes)["complete"]:
        raise Invalid("certificate: not complete")

    lines = v["memberKeyFile"].splitlines()
    seed_line = next(line for line in lines if line.startswith("# medvault-signing-key: "))
    seed = unbase64(seed_line.split(": ", 1)[1].strip(), 32, "member key file")
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if f"# member id: {key_id(raw)}" not in lines or not any(line.startswith("AGE-SECRET-KEY-1") for line in lines):
        raise Invalid("member key file")
    invite = v["invite"]
    if canonical(invite["invite"]).decode() != invite["canonical"]:
        raise Invalid("invite: canonical JSON")
    if hashlib.sha256(b"medvault-invite-v1\n" + canonical(invite["invite"])).hexdigest() != invite["digest"]:
        raise Invalid("invite: digest")
    return "every vector verifies"


# Signing a request (docs/formats.md, "Signed requests").

def sign_request(key_file_text, method, path, body, now_ms=None, nonce=None):
    seed_line = next(line for line in key_file_text.splitlines() if line.startswith("# medvault-signing-key: "))
    key = Ed25519PrivateKey.from_private_bytes(unbase64(seed_line.split(": ", 1)[1].strip(), 32, "signing key"))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    time_ms = str(now_ms if now_ms is not None else int(__import__("time").time() * 1000))
    nonce = nonce or __import__("os").urandom(16).hex()
    body_hash = hashlib.sha256(body).hexdigest()
    message = "\n".join(["medvault-request-v1", method.upper(), path, time_ms, nonce, body_hash]).encode()
    return {
        "medvault-key": key_id(public),
        "medvault-time": time_ms,
        "medvault-nonce": nonce,
        "medvault-content-sha256": body_hash,
        "medvault-signature": base64.b64encode(key.sign(message)).decode(),
    }


def main(argv):
    if argv and argv[0] == "sign-request":
        if len(argv) not in (4, 5):
            print(__doc__, file=sys.stderr)
            return 2
        with open(argv[1], encoding="utf-8") as f:
            key_text = f.read()
        body = b""
        if len(argv) == 5:
            with open(argv[4], "rb") as f:
                body = f.read()
        print(json.dumps(sign_request(key_text, argv[2], argv[3], body)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["receipt", "checkpoint", "certificate", "vectors"])
    parser.add_argument("file")
    parser.add_argument("--trust", action="append", help="a node key id to trust (repeat)")
    parser.add_argument("--quorum", type=int)
    parser.add_argument("--keys", help="the node key history (a node's GET /v1/node answer, or its keyHistory list)")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        document = json.load(f)
    trusted = args.trust
    try:
        if args.keys and trusted:
            with open(args.keys, encoding="utf-8") as f:
                trusted = follow_history(trusted, json.load(f))
        if args.kind == "receipt":
            event = verify_receipt(document, trusted)
            print(f"valid receipt: {event['type']} in block {document['block']['height']}")
        elif args.kind == "checkpoint":
            signers = verify_checkpoint(document, trusted, args.quorum)
            print(f"valid checkpoint of block {document['height']}, signed by {len(signers)}")
        elif args.kind == "certificate":
            result = verify_certificate(document, trusted)
            state = "complete" if result["complete"] else f"incomplete, waiting for {', '.join(result['missing'])}"
            print(f"valid certificate: {result['records']} record(s) erased, {state}")
        else:
            print(check_vectors(document))
    except (Invalid, KeyError, TypeError, ValueError, AttributeError) as err:
        print(f"INVALID: {err if isinstance(err, Invalid) else f'malformed ({type(err).__name__}: {err})'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
