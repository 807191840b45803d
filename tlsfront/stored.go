package tlsfront

import (
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Stored reads the certificates kept in a cache directory (certmagic's
// file layout: certificates/ISSUER/NAME/NAME.crt), for `ten doctor`, which
// runs without the server. A missing directory holds none.
func Stored(cacheDir string, now time.Time) ([]Cert, error) {
	root := filepath.Join(cacheDir, "certificates")
	var out []Cert
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".crt") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			out = append(out, Cert{Names: []string{strings.TrimSuffix(d.Name(), ".crt")}, Error: p + ": not PEM"})
			return nil
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			out = append(out, Cert{Names: []string{strings.TrimSuffix(d.Name(), ".crt")}, Error: p + ": " + err.Error()})
			return nil
		}
		out = append(out, Cert{Names: c.DNSNames, Issuer: c.Issuer.CommonName, NotBefore: c.NotBefore, NotAfter: c.NotAfter, ExpiresIn: c.NotAfter.Sub(now).Seconds()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return strings.Join(out[i].Names, ",") < strings.Join(out[j].Names, ",") })
	return out, err
}
