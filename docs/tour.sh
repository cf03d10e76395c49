#!/usr/bin/env bash
# The README's CLI tour, verbatim (scripts/gen-docs copies it into README.md; tests/test_tour.py
# runs it line by line in a fresh directory, each line with the exit code its comment names).
set -u
# --- tour ---
export TRUSTLOG_KEYS=./keys TRUSTLOG_PASSPHRASE='correct horse battery staple'  # keys here, encrypted
trustlog log init                                  # an empty log in ./trustlog-data (or --log DIR)
trustlog key generate root
trustlog key generate targets --type ecdsa-p256
trustlog key generate targets2                     # for the rotation below
trustlog key generate alice
trustlog key generate ci
REPO=registry.example.com/team/app
trustlog repo create $REPO --root-key root --targets-key targets
trustlog repo create registry.example.com/team/api --root-key root --targets-key targets
trustlog signer add $REPO alice --key alice --paths 'v*' --sign-with targets
trustlog signer add $REPO ci --key ci --paths 'build-*' --sign-with targets
trustlog signer add registry.example.com/team/api ci --key ci --paths 'build-*' --sign-with targets
trustlog sign $REPO v1.2 sha256:$(printf v1.2 | sha256sum | cut -c1-64) --role targets/alice --sign-with alice
trustlog sign $REPO latest sha256:$(printf x | sha256sum | cut -c1-64) --role targets/alice --sign-with alice  # exit 1: outside alice's patterns
trustlog rejects --reason OUTSIDE_PATTERNS         # what was refused, and why
SINCE=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)           # a point in log time: alice's key leaks here
trustlog sign $REPO v1.3 sha256:$(printf v1.3 | sha256sum | cut -c1-64) --role targets/alice --sign-with alice --out events.jsonl
trustlog ingest events.jsonl                       # envelopes written elsewhere (--out), appended here
trustlog rotate targets $REPO --new-key targets2 --sign-with root
trustlog compromise $REPO alice --since $SINCE --sign-with targets2
printf '{"repo":"%s","tag":"%s"}\n' $REPO v1.2 $REPO v1.3 $REPO nope > requests.jsonl
trustlog verify requests.jsonl -o verdicts.jsonl   # v1.2 VALID (signed before SINCE), v1.3 KEY_COMPROMISED
trustlog verify requests.jsonl -o verdicts.jsonl --fail-on-reject  # exit 1: not every verdict is VALID
trustlog inspect $REPO
trustlog compromise-everywhere ci --since $SINCE   # every repository that grants the CI key, one command
trustlog --version                                 # names the verifier backend in use

# the tamper-evident log and the audit
trustlog log verify                                # trust nothing on disk: CRCs, Merkle root vs every
                                                   # signed checkpoint, every signature, every transition
trustlog checkpoint latest --json > cp.json
trustlog proof inclusion 2 --json > proof.json     # record 2: alice made a signer of team/app
trustlog proof verify proof.json --checkpoint cp.json --log-key trustlog-data/log.pub   # without the log
trustlog state $REPO --at 6                        # after the first 6 records: v1.2 signed, v1.3 not yet
trustlog replay verify requests.jsonl --at $SINCE  # the verdicts the images had then
trustlog audit --key alice --since $SINCE --html alice.html
trustlog proof verify alice.html --log-key trustlog-data/log.pub   # the report alone proves its source
trustlog --json inspect registry.example.com/team/typo  # exit 2: a JSON error object on stdout
trustlog verify requests.jsonl --log ./typo        # exit 2: no log there, and none is created
