package fleet

import (
	"fmt"
	"strings"
)

// Prefix is the root of every key ten writes to etcd.
const Prefix = "/ten/fleet/"

// The key schema. Every value is JSON unless noted.
//
//	/ten/fleet/nodes/<node>          NodeInfo, attached to the node's lease
//	/ten/fleet/placement/<svc>:<id>  node name (plain text): where the instance should run
//	/ten/fleet/owner/<svc>:<id>      node name (plain text), attached to the owner's lease:
//	                                 who runs it now
//	/ten/fleet/weights/<svc>:<id>    routing weight (decimal text)
//	/ten/fleet/failed/<svc>:<id>     reason (plain text): health checks gave up on it
//	/ten/fleet/tokens/<token id>     an API token's stored record: its argon2id hash and
//	                                 salt, tenant and description, never the secret
//	/ten/fleet/services              ServicesRecord: the services fingerprint of the fleet
//	/ten/fleet/peer-key              32 random bytes (hex): the secret the routers' peer
//	                                 token is derived from (PeerKey)
const (
	nodesDir     = Prefix + "nodes/"
	placementDir = Prefix + "placement/"
	ownerDir     = Prefix + "owner/"
	weightsDir   = Prefix + "weights/"
	failedDir    = Prefix + "failed/"
	tokensDir    = Prefix + "tokens/"
	servicesKey  = Prefix + "services"
	peerKeyKey   = Prefix + "peer-key"
)

// NodeKey is the key of node's record.
func NodeKey(node string) string { return nodesDir + node }

// PlacementKey is the key naming the node an instance is placed on.
func PlacementKey(instance string) string { return placementDir + instance }

// OwnerKey is the key naming the node that runs an instance now.
func OwnerKey(instance string) string { return ownerDir + instance }

// WeightKey is the key of an instance's routing weight.
func WeightKey(instance string) string { return weightsDir + instance }

// FailedKey is the key that marks an instance failed.
func FailedKey(instance string) string { return failedDir + instance }

// TokenKey is the key of an API token's record.
func TokenKey(id string) string { return tokensDir + id }

// InstanceFromKey returns the instance ("svc:id") a placement, owner,
// weight or failed key names, and false for any other key.
func InstanceFromKey(key string) (string, bool) {
	for _, dir := range []string{placementDir, ownerDir, weightsDir, failedDir} {
		if rest, ok := strings.CutPrefix(key, dir); ok {
			if err := ValidInstance(rest); err != nil {
				return "", false
			}
			return rest, true
		}
	}
	return "", false
}

// maxName bounds node, service and id names in keys.
const maxName = 128

// ValidNode checks a node name: 1 to 128 of [a-z0-9-_.], so that it is a
// single key segment and a DNS-safe label.
func ValidNode(node string) error {
	if node == "" || len(node) > maxName {
		return fmt.Errorf("node name %q: want 1 to %d characters", node, maxName)
	}
	for _, r := range node {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("node name %q: character %q not in [a-z0-9-_.]", node, r)
		}
	}
	return nil
}

// ValidInstance checks an instance name "service:id" for use in a key.
func ValidInstance(inst string) error {
	svc, id, ok := strings.Cut(inst, ":")
	if !ok || svc == "" || id == "" || len(inst) > 2*maxName+1 {
		return fmt.Errorf("instance %q: want service:id", inst)
	}
	if strings.ContainsAny(inst, "/\x00") || strings.Contains(id, ":") {
		return fmt.Errorf("instance %q: '/', NUL and a second ':' are not allowed", inst)
	}
	return nil
}
