package fleet

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// What the fleet shares besides placement: routing weights, failed marks
// and API tokens. Each is written by whichever node is asked, and every
// node reads it from its Watcher's view, so that a weight set on any node
// is the one the owning node routes by, a failed mark set by the owning
// node's health loop answers 503 on every node, and a token made on any
// node authenticates on every node.

// maxReason bounds a failed mark's reason as stored and shown.
const maxReason = 1024

// maxTokenRecord bounds a token record (its hash, salt, tenant and a
// description of at most 200 characters take well under 1 KiB).
const maxTokenRecord = 4096

// ParseWeight reads a weight value: decimal 0 to 100.
func ParseWeight(val []byte) (int, error) {
	w, err := strconv.Atoi(strings.TrimSpace(string(val)))
	if err != nil || w < 0 || w > 100 {
		return 0, fmt.Errorf("weight %q: want 0 to 100", val)
	}
	return w, nil
}

func boundReason(r string) string {
	if len(r) > maxReason {
		return r[:maxReason]
	}
	return r
}

// ValidTokenID checks a token id: 16 hex digits, as auth makes them.
func ValidTokenID(id string) error {
	if len(id) != 16 {
		return fmt.Errorf("token id %q: want 16 hex digits", id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("token id %q: want 16 hex digits", id)
	}
	return nil
}

// SetWeight records inst's routing weight for the fleet.
func SetWeight(ctx context.Context, cli *clientv3.Client, inst string, w int) error {
	if err := ValidInstance(inst); err != nil {
		return err
	}
	if w < 0 || w > 100 {
		return fmt.Errorf("weight %d of %s: want 0 to 100", w, inst)
	}
	if _, err := cli.Put(ctx, WeightKey(inst), strconv.Itoa(w)); err != nil {
		return fmt.Errorf("fleet: key %s: %w", WeightKey(inst), err)
	}
	return nil
}

// SetFailed records inst's failed mark for the fleet; reason "" clears it.
func SetFailed(ctx context.Context, cli *clientv3.Client, inst, reason string) error {
	if err := ValidInstance(inst); err != nil {
		return err
	}
	key := FailedKey(inst)
	var err error
	if reason == "" {
		_, err = cli.Delete(ctx, key)
	} else {
		_, err = cli.Put(ctx, key, boundReason(reason))
	}
	if err != nil {
		return fmt.Errorf("fleet: key %s: %w", key, err)
	}
	return nil
}

// PutToken records an API token's record (auth.Store.NewShared made it)
// for the fleet. A record for the id already there is kept: ids are
// random, and a token is never overwritten.
func PutToken(ctx context.Context, cli *clientv3.Client, id string, rec []byte) error {
	if err := ValidTokenID(id); err != nil {
		return err
	}
	if len(rec) > maxTokenRecord {
		return fmt.Errorf("token %s: record of %d bytes, at most %d", id, len(rec), maxTokenRecord)
	}
	key := TokenKey(id)
	r, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(rec))).
		Commit()
	if err != nil {
		return fmt.Errorf("fleet: key %s: %w", key, err)
	}
	if !r.Succeeded {
		return fmt.Errorf("fleet: key %s exists already", key)
	}
	return nil
}

// DeleteToken removes an API token from the fleet; existed is false when
// the fleet had no token with that id.
func DeleteToken(ctx context.Context, cli *clientv3.Client, id string) (existed bool, err error) {
	if err := ValidTokenID(id); err != nil {
		return false, err
	}
	r, err := cli.Delete(ctx, TokenKey(id))
	if err != nil {
		return false, fmt.Errorf("fleet: key %s: %w", TokenKey(id), err)
	}
	return r.Deleted > 0, nil
}

// PutNodeToken records (or replaces) a node's admin token record: the
// SHA-256 of its api_token file token, which may have been rotated since
// the node last started.
func PutNodeToken(ctx context.Context, cli *clientv3.Client, id string, rec []byte) error {
	if err := ValidTokenID(id); err != nil {
		return err
	}
	if len(rec) > maxTokenRecord {
		return fmt.Errorf("token %s: record of %d bytes, at most %d", id, len(rec), maxTokenRecord)
	}
	if _, err := cli.Put(ctx, TokenKey(id), string(rec)); err != nil {
		return fmt.Errorf("fleet: key %s: %w", TokenKey(id), err)
	}
	return nil
}
