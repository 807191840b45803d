package tlsfront

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/cloudflare"
	"github.com/libdns/rfc2136"
)

// DNSVars are the credentials each DNS provider reads (from ten's
// environment or the dns_credentials file); the first of each list is
// required, "*" marks the others that are.
var DNSVars = map[string][]string{
	"cloudflare": {"CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ZONE_TOKEN"},
	"rfc2136":    {"RFC2136_NAMESERVER", "*RFC2136_TSIG_KEY", "*RFC2136_TSIG_SECRET", "RFC2136_TSIG_ALGORITHM"},
}

// DNSAliases are other names a credential is read under when its own is
// not set: CF_API_TOKEN, the name tenement's Caddyfile gave Cloudflare's
// token.
var DNSAliases = map[string]string{"CLOUDFLARE_API_TOKEN": "CF_API_TOKEN"}

// maxCredentialsFile bounds the dns_credentials file.
const maxCredentialsFile = 64 << 10

// Credentials returns a look-up of the DNS provider's credentials: the
// environment (getenv) first, then the KEY=VALUE lines of file (when not
// ""; blank lines and lines starting with '#' are skipped, a value may be
// quoted).
func Credentials(file string, getenv func(string) string) (func(string) string, error) {
	vals := map[string]string{}
	if file != "" {
		st, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("settings.tls.dns_credentials: %w", err)
		}
		if st.Size() > maxCredentialsFile {
			return nil, fmt.Errorf("settings.tls.dns_credentials %s: %d bytes, at most %d", file, st.Size(), maxCredentialsFile)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("settings.tls.dns_credentials: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("settings.tls.dns_credentials %s:%d: want KEY=VALUE", file, n)
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			vals[k] = v
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("settings.tls.dns_credentials %s: %w", file, err)
		}
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vals[k]
	}, nil
}

// DNSProvider returns the libdns provider that settings.tls.dns_provider
// names, with its credentials from get (Credentials). A missing credential
// is an error naming the variable.
func DNSProvider(name string, get func(string) string) (certmagic.DNSProvider, error) {
	vars, ok := DNSVars[name]
	if !ok {
		return nil, fmt.Errorf("settings.tls.dns_provider: %q is not a DNS provider ten supports", name)
	}
	if name == "cloudflare" {
		// tenement's Caddyfile had Caddy read CF_API_TOKEN: a user who
		// set that one for tenement is not asked to rename it.
		get0 := get
		get = func(k string) string {
			if v := get0(k); v != "" || k != "CLOUDFLARE_API_TOKEN" {
				return v
			}
			return get0(DNSAliases[k])
		}
	}
	var missing []string
	for i, v := range vars {
		req := i == 0 || strings.HasPrefix(v, "*")
		v = strings.TrimPrefix(v, "*")
		if req && get(v) == "" {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		also := ""
		for _, v := range missing {
			if a := DNSAliases[v]; a != "" {
				also += fmt.Sprintf("; %s is read as %s too", a, v)
			}
		}
		return nil, fmt.Errorf("settings.tls.dns_provider %s: %s not set (in ten's environment or the file settings.tls.dns_credentials%s)", name, strings.Join(missing, ", "), also)
	}
	switch name {
	case "cloudflare":
		return &cloudflare.Provider{APIToken: get("CLOUDFLARE_API_TOKEN"), ZoneToken: get("CLOUDFLARE_ZONE_TOKEN")}, nil
	case "rfc2136":
		alg := get("RFC2136_TSIG_ALGORITHM")
		if alg == "" {
			alg = "hmac-sha256."
		}
		if !strings.HasSuffix(alg, ".") {
			alg += "."
		}
		if !tsigAlgs[alg] {
			return nil, fmt.Errorf("settings.tls.dns_provider rfc2136: RFC2136_TSIG_ALGORITHM %q: want hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224 or hmac-sha1", alg)
		}
		server := get("RFC2136_NAMESERVER")
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(server, "53")
		}
		return &rfc2136.Provider{Server: server, KeyName: get("RFC2136_TSIG_KEY"), Key: get("RFC2136_TSIG_SECRET"), KeyAlg: alg}, nil
	default:
		return nil, fmt.Errorf("settings.tls.dns_provider: %q has no constructor", name)
	}
}

// tsigAlgs are the TSIG algorithms miekg/dns signs with.
var tsigAlgs = map[string]bool{"hmac-sha256.": true, "hmac-sha512.": true, "hmac-sha384.": true, "hmac-sha224.": true, "hmac-sha1.": true}
