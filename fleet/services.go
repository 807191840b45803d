package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Fingerprint maps each service name to a digest of its configuration.
// Nodes of one fleet must agree on services (an instance may run on any of
// them); the first node records its fingerprint and later nodes compare.
type Fingerprint map[string]string

// FingerprintOf digests each service's configuration (any value that
// encodes to JSON deterministically, such as config.Service).
func FingerprintOf[S any](services map[string]S) (Fingerprint, error) {
	fp := make(Fingerprint, len(services))
	for name, svc := range services {
		b, err := json.Marshal(svc)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		fp[name] = hex.EncodeToString(sum[:8])
	}
	return fp, nil
}

// Diff lists, one line each and sorted, how local differs from the
// fleet's recorded fingerprint; empty when they agree.
func (local Fingerprint) Diff(fleet Fingerprint) []string {
	var out []string
	for name, d := range local {
		fd, ok := fleet[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("service %s: only on this node", name))
		case fd != d:
			out = append(out, fmt.Sprintf("service %s: configured differently from the fleet", name))
		}
	}
	for name := range fleet {
		if _, ok := local[name]; !ok {
			out = append(out, fmt.Sprintf("service %s: in the fleet, missing on this node", name))
		}
	}
	sort.Strings(out)
	return out
}
