// c2spverify checks a trustlog checkpoint with an implementation trustlog does not
// share code with: Go's golang.org/x/mod/sumdb/note (signed notes) and
// golang.org/x/mod/sumdb/tlog (RFC 6962 proofs).
//
//	c2spverify VKEY_FILE NOTE_FILE [PROOF_JSON]
//
// It opens the note with the log's verifier key, parses the tlog-checkpoint body
// (origin, size, base64 root hash), and, given an inclusion proof written by
// `trustlog proof inclusion --json`, checks it against the checkpoint's root.
// Prints one JSON line; exits 1 when anything fails to verify.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	LeafIndex int64    `json:"leaf_index"`
	TreeSize  int64    `json:"tree_size"`
	LeafHash  string   `json:"leaf_hash"`
	Record    string   `json:"record"`
	Proof     []string `json:"proof"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "c2spverify: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: c2spverify VKEY_FILE NOTE_FILE [PROOF_JSON]")
	}
	vkey, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		fail("verifier key: %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("note: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 || lines[0] != verifier.Name() {
		fail("checkpoint origin %q is not the key name %q", lines[0], verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		fail("bad tree size line %q", lines[1])
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("bad root hash line %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	out := map[string]any{"origin": lines[0], "tree_size": size, "root_hash": hex.EncodeToString(root[:]),
		"signatures": len(n.Sigs), "unverified_signatures": len(n.UnverifiedSigs), "extensions": lines[3:]}
	if len(os.Args) > 3 {
		data, err := os.ReadFile(os.Args[3])
		if err != nil {
			fail("%v", err)
		}
		var p inclusion
		if err := json.Unmarshal(data, &p); err != nil {
			fail("proof: %v", err)
		}
		if p.TreeSize != size {
			fail("proof is for size %d, checkpoint is %d", p.TreeSize, size)
		}
		record, err := base64.StdEncoding.DecodeString(p.Record)
		if err != nil {
			fail("record: %v", err)
		}
		leaf := tlog.RecordHash(record)
		if hex.EncodeToString(leaf[:]) != p.LeafHash {
			fail("record does not hash to leaf_hash")
		}
		proof := make(tlog.RecordProof, len(p.Proof))
		for i, h := range p.Proof {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != tlog.HashSize {
				fail("proof hash %d: %q", i, h)
			}
			copy(proof[i][:], b)
		}
		if err := tlog.CheckRecord(proof, size, root, p.LeafIndex, leaf); err != nil {
			fail("inclusion proof: %v", err)
		}
		out["inclusion_verified"] = p.LeafIndex
	}
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}
