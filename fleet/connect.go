package fleet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tenhq/ten/config"
)

// ClientConfig turns the [fleet] table into an etcd client configuration,
// reading the TLS files it names. Errors name the key and the file.
func ClientConfig(f config.Fleet) (clientv3.Config, error) {
	cc := clientv3.Config{
		Endpoints:   f.EtcdEndpoints,
		DialTimeout: 5 * time.Second,
		// gRPC pings an idle connection every 10 s (its floor) and, with
		// keep-alive on, sets TCP_USER_TIMEOUT to the ping timeout: a
		// request written to a member that is cut off fails within 2 s, and
		// the client moves on to another member, instead of hanging until
		// the caller's deadline (a keep-alive, a claim).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		PermitWithoutStream:  true,
		Logger:               zap.NewNop(),
	}
	if f.CA == "" && f.Cert == "" {
		return cc, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return cc, fmt.Errorf("fleet.ca: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return cc, fmt.Errorf("fleet.ca: %s: no PEM certificate", f.CA)
		}
	}
	if f.Cert != "" {
		kp, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return cc, fmt.Errorf("fleet.cert, fleet.key: %w", err)
		}
		t.Certificates = []tls.Certificate{kp}
	}
	cc.TLS = t
	return cc, nil
}

// TimingOf is the [fleet] table's lease TTL and fencing margin.
func TimingOf(f config.Fleet) Timing {
	return Timing{TTL: time.Duration(f.LeaseTTL) * time.Second, Margin: time.Duration(f.FenceMargin) * time.Second}
}

// CheckServices compares this node's services with the fleet's recorded
// fingerprint, recording this one if the fleet has none yet. It returns
// the differences (empty when the node agrees), for the node to report
// at start.
func CheckServices(ctx context.Context, cli *clientv3.Client, local Fingerprint) ([]string, error) {
	val, err := json.Marshal(local)
	if err != nil {
		return nil, err
	}
	stored, created, err := createOrGet(ctx, cli, servicesKey, string(val))
	if err != nil {
		return nil, fmt.Errorf("fleet: services record: %w", err)
	}
	if created {
		return nil, nil
	}
	var recorded Fingerprint
	if err := json.Unmarshal(stored, &recorded); err != nil {
		return nil, fmt.Errorf("fleet: key %s: %w", servicesKey, err)
	}
	return local.Diff(recorded), nil
}

// PeerKey returns the fleet's peer secret, which the routers' peer token
// (router/fleet.PeerAuth) is derived from, making it if the fleet has none
// yet: the first node writes 32 random bytes, and every node reads the
// same. It is as secret as etcd is (fleet.ca, fleet.cert): a node's apps
// never see it.
func PeerKey(ctx context.Context, cli *clientv3.Client) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	stored, created, err := createOrGet(ctx, cli, peerKeyKey, hex.EncodeToString(fresh))
	if err != nil {
		return nil, fmt.Errorf("fleet: peer key: %w", err)
	}
	if created {
		return fresh, nil
	}
	key, err := hex.DecodeString(string(stored))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("fleet: key %s: not a hex secret of at least 16 bytes", peerKeyKey)
	}
	return key, nil
}

// createOrGet puts val at key unless the key exists, in one transaction:
// created says it was put; otherwise stored is the value already there
// (what the first node of the fleet wrote).
func createOrGet(ctx context.Context, cli *clientv3.Client, key, val string) (stored []byte, created bool, err error) {
	r, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, false, err
	}
	if r.Succeeded {
		return nil, true, nil
	}
	kvs := r.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, false, fmt.Errorf("key %s vanished", key)
	}
	return kvs[0].Value, false, nil
}
