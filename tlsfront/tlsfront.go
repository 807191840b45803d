// Package tlsfront is ten's HTTPS front: certificates from an ACME CA
// (certmagic) for the bare domain and for every instance and service host,
// obtained on first use — but only for names that route somewhere, so a
// client cannot make ten ask the CA for random names. It also answers the
// HTTP-01 challenge and redirects everything else on http_port to HTTPS,
// reports its certificates (GET /api/tls/status, `ten doctor`) and exports
// their expiry as ten_tls_certificate_expiry_seconds.
package tlsfront

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
)

// Let's Encrypt's directories (tenement's `staging` picks the second).
const (
	ProductionCA = certmagic.LetsEncryptProductionCA
	StagingCA    = certmagic.LetsEncryptStagingCA
)

// MaxNames bounds how many names ten keeps certificates for. Each name
// that routes is a host of an existing instance or service, so the bound
// only matters against a config gone wild; past it new names are refused.
const MaxNames = 10000

// Options configure a Front.
type Options struct {
	// Domain is the base domain: the bare domain gets a certificate and
	// every host under it that Routes accepts.
	Domain string
	// Email is the ACME account's contact (acme_email).
	Email string
	// CA is the ACME directory URL; empty means Let's Encrypt (Staging
	// picks its staging directory).
	CA      string
	Staging bool
	// CARoots are PEM certificates to trust for the ACME server's own TLS
	// (a private CA such as step-ca or pebble); empty: the system roots.
	CARoots []byte
	// CacheDir keeps the account, keys and certificates.
	CacheDir string
	// HTTPSPort and HTTPPort are where ten listens: the redirect names the
	// HTTPS port when it is not 443, and the ACME solvers know the ports
	// are served here.
	HTTPSPort, HTTPPort int
	// Routes reports whether name (lower case, no port) is the host of an
	// existing instance or service. The bare domain always routes.
	Routes func(name string) bool
	// NoHTTPChallenge and NoTLSALPNChallenge turn one ACME challenge off
	// (for a host where port 80 or 443 is not reachable from the CA).
	NoHTTPChallenge, NoTLSALPNChallenge bool
	// RenewCheck is how often the certificates are checked for renewal
	// (certmagic's default, 10 minutes, when 0). Certificates used in a
	// handshake are checked then too.
	RenewCheck time.Duration
	// DNS01 answers ACME DNS-01 challenges (settings.tls.dns_provider,
	// built by DNSProvider). With it the names Prefetch manages include
	// the wildcards *.DOMAIN (every service host) and *.SERVICE.DOMAIN for
	// each of Services (every instance host), obtained through DNS-01;
	// certificates on demand keep using HTTP-01 and TLS-ALPN-01.
	DNS01 certmagic.DNSProvider
	// DNSResolvers are the DNS servers (HOST:PORT) DNS-01 asks for the
	// zone and the propagation of its record (empty: the system's).
	DNSResolvers []string
	// Services are the services whose instance hosts get a wildcard.
	Services []string
	Log      *slog.Logger
}

// Front manages the certificates and serves the TLS handshake.
type Front struct {
	o     Options
	magic *certmagic.Config
	// managed gets the bare domain's certificate at start (certmagic's
	// Manage on a config with OnDemand only allow-lists names).
	managed *certmagic.Config
	cache   *certmagic.Cache
	issuer  *certmagic.ACMEIssuer
	log     *slog.Logger
	// managedNames are Managed's names, set once in New.
	managedNames map[string]bool

	mu sync.Mutex // mu guards the following
	// names holds every name a certificate was wanted for, with its last
	// event.
	names   map[string]*nameState
	refused uint64
	// lastRefusalLog rate-limits the refusal log line: any client can
	// send handshakes with random names.
	lastRefusalLog time.Time
}

type nameState struct {
	obtained time.Time
	err      string
	errAt    time.Time
	renewals int
}

// New sets up certificate management; nothing is requested before the
// first handshake for a name (or Prefetch).
func New(o Options) (*Front, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Domain = strings.ToLower(strings.TrimSuffix(o.Domain, "."))
	if o.Domain == "" {
		return nil, errors.New("settings.tls: no domain: set settings.tls.domain or settings.domain")
	}
	if o.CacheDir == "" {
		return nil, errors.New("settings.tls.cache_dir: empty")
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("settings.tls.cache_dir %s: %w", o.CacheDir, err)
	}
	ca := o.CA
	if ca == "" {
		ca = ProductionCA
		if o.Staging {
			ca = StagingCA
		}
	}
	var roots *x509.CertPool
	if len(o.CARoots) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(o.CARoots) {
			return nil, errors.New("settings.tls.ca_root: no PEM certificate in it")
		}
	}
	f := &Front{o: o, log: o.Log, names: map[string]*nameState{}, managedNames: map[string]bool{}}
	for _, n := range f.Managed() {
		f.managedNames[n] = true
	}
	zl := zapLogger(o.Log)
	var magic *certmagic.Config
	f.cache = certmagic.NewCache(certmagic.CacheOptions{
		// Renewal uses the config a certificate came from: the managed
		// names' issuer is the one with DNS-01, which wildcards need.
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			for _, n := range c.Names {
				if f.managedNames[n] {
					return f.managed, nil
				}
			}
			return magic, nil
		},
		RenewCheckInterval: o.RenewCheck,
		Logger:             zl,
	})
	magic = certmagic.New(f.cache, certmagic.Config{
		Storage:  &certmagic.FileStorage{Path: o.CacheDir},
		OnDemand: &certmagic.OnDemandConfig{DecisionFunc: f.decide},
		OnEvent:  f.event,
		Logger:   zl,
	})
	template := certmagic.ACMEIssuer{
		CA:             ca,
		Email:          o.Email,
		Agreed:         true,
		TrustedRoots:   roots,
		AltHTTPPort:    o.HTTPPort,
		AltTLSALPNPort: o.HTTPSPort,
		Logger:         zl,

		DisableHTTPChallenge:    o.NoHTTPChallenge,
		DisableTLSALPNChallenge: o.NoTLSALPNChallenge,
	}
	f.issuer = certmagic.NewACMEIssuer(magic, template)
	magic.Issuers = []certmagic.Issuer{f.issuer}
	f.magic = magic
	f.managed = certmagic.New(f.cache, certmagic.Config{Storage: magic.Storage, OnEvent: f.event, Logger: zl})
	if o.DNS01 != nil {
		// Wildcards need DNS-01; certmagic then uses it alone for
		// this issuer, so the bare domain gets its certificate that way too.
		template.DNS01Solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider: o.DNS01, Resolvers: o.DNSResolvers, Logger: zl,
		}}
	}
	f.managed.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(f.managed, template)}
	return f, nil
}

// Close stops the renewal loop.
func (f *Front) Close() { f.cache.Stop() }

// CA is the ACME directory in use.
func (f *Front) CA() string { return f.issuer.CA }

// Routable reports whether ten would request a certificate for name: the
// bare domain, or a host under it that routes to an existing instance or
// service. IP addresses and other domains never get one.
func (f *Front) Routable(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == f.o.Domain {
		return true
	}
	if !strings.HasSuffix(name, "."+f.o.Domain) || net.ParseIP(name) != nil {
		return false
	}
	return f.o.Routes != nil && f.o.Routes(name)
}

// decide is certmagic's on-demand decision: it runs before any certificate
// is requested for a name seen in a handshake.
func (f *Front) decide(_ context.Context, name string) error {
	if !f.Routable(name) {
		f.mu.Lock()
		f.refused++
		n, logIt := f.refused, time.Since(f.lastRefusalLog) >= time.Second
		if logIt {
			f.lastRefusalLog = time.Now()
		}
		f.mu.Unlock()
		if logIt {
			f.log.Info("tls: refusing a certificate for a name that routes nowhere (logged at most once a second)", "name", name, "refused_so_far", n)
		}
		return fmt.Errorf("%s routes to no instance or service under %s", name, f.o.Domain)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.names[name]; !ok {
		if len(f.names) >= MaxNames {
			return fmt.Errorf("tls: %d names have certificates already", MaxNames)
		}
		f.names[name] = &nameState{}
	}
	return nil
}

// event records certmagic's certificate events for the status.
func (f *Front) event(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	if name == "" {
		return nil
	}
	renewal, _ := data["renewal"].(bool)
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.names[name]
	if st == nil {
		if len(f.names) >= MaxNames {
			return nil
		}
		st = &nameState{}
		f.names[name] = st
	}
	switch event {
	case "cert_obtained":
		st.obtained, st.err = time.Now(), ""
		if renewal {
			st.renewals++
		}
		f.log.Info("tls: certificate obtained", "name", name, "renewal", renewal)
	case "cert_failed":
		st.err, st.errAt = fmt.Sprint(data["error"]), time.Now()
		f.log.Warn("tls: certificate failed", "name", name, "renewal", renewal, "err", st.err)
	}
	return nil
}

// TLSConfig is the server side of the handshake: certificates on demand,
// the TLS-ALPN-01 challenge, HTTP/2 and HTTP/1.1.
func (f *Front) TLSConfig() *tls.Config {
	c := f.magic.TLSConfig()
	onDemand := c.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// A name served by a managed certificate (the bare domain, a
		// wildcard) is served by the config that manages it: the
		// on-demand config would renew it in the handshake with its own
		// issuer (no DNS-01, so no wildcard) after asking the decision
		// about the host, and drop it from the cache when that says no.
		if !slices.Contains(hello.SupportedProtos, "acme-tls/1") && f.servedByManaged(hello.ServerName) {
			return f.managed.GetCertificate(hello)
		}
		return onDemand(hello)
	}
	c.NextProtos = append([]string{"h2", "http/1.1"}, c.NextProtos...)
	c.MinVersion = tls.VersionTLS12
	return c
}

// servedByManaged reports whether the certificate a handshake for name
// would get (an exact match first, then a wildcard) is one of Managed's.
func (f *Front) servedByManaged(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return false
	}
	certs := f.cache.AllMatchingCertificates(name)
	if len(certs) == 0 {
		return false
	}
	for _, n := range certs[0].Names {
		if f.managedNames[n] {
			return true
		}
	}
	return false
}

// Prefetch obtains (or loads) the managed certificates in the background,
// so the first visitor does not wait for them: the bare domain's, and with
// DNS01 the wildcards (Managed).
func (f *Front) Prefetch(ctx context.Context) {
	names := f.Managed()
	f.mu.Lock()
	for _, n := range names {
		if f.names[n] == nil {
			f.names[n] = &nameState{}
		}
	}
	f.mu.Unlock()
	go func() {
		if err := f.managed.ManageAsync(ctx, names); err != nil {
			f.log.Warn("tls: manage certificates", "names", names, "err", err)
		}
	}()
}

// Managed returns the names whose certificates are kept from the start
// (Prefetch): the bare domain, and with DNS01 *.DOMAIN and *.SERVICE.DOMAIN
// for each service.
func (f *Front) Managed() []string {
	names := []string{f.o.Domain}
	if f.o.DNS01 != nil {
		names = append(names, "*."+f.o.Domain)
		for _, s := range f.o.Services {
			names = append(names, "*."+strings.ToLower(s)+"."+f.o.Domain)
		}
	}
	return names
}

// RedirectHandler serves http_port: ACME HTTP-01 challenges, and a
// permanent redirect to the same URL over HTTPS for everything else
// (tenement does the same). A request for a host that routes nowhere gets
// 404 instead of a redirect to a name that will have no certificate.
func (f *Front) RedirectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(host)
		if !f.Routable(host) {
			http.Error(w, fmt.Sprintf("%s is not served here over HTTPS", host), http.StatusNotFound)
			return
		}
		if f.o.HTTPSPort != 443 && f.o.HTTPSPort != 0 {
			host = net.JoinHostPort(host, strconv.Itoa(f.o.HTTPSPort))
		}
		u := *r.URL
		u.Scheme, u.Host = "https", host
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			w.Header().Set("Connection", "close")
		}
		http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
	})
}

// Cert is one certificate in the status.
type Cert struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// ExpiresIn is seconds until NotAfter (negative: expired).
	ExpiresIn float64 `json:"expires_in_seconds"`
	Renewals  int     `json:"renewals"`
	// OCSP says whether an OCSP response is stapled.
	OCSP bool `json:"ocsp_stapled"`
	// Error is the last failure to obtain or renew it, "" when the last
	// attempt succeeded.
	Error string `json:"error,omitempty"`
}

// Status is GET /api/tls/status.
type Status struct {
	Enabled      bool   `json:"enabled"`
	Domain       string `json:"domain"`
	CA           string `json:"ca"`
	HTTPSPort    int    `json:"https_port"`
	HTTPPort     int    `json:"http_port"`
	Certificates []Cert `json:"certificates"`
	// Refused counts names a certificate was refused for (they route
	// nowhere).
	Refused uint64 `json:"refused"`
}

// Status reports every name with a certificate or a failed attempt.
func (f *Front) Status() Status {
	st := Status{Enabled: true, Domain: f.o.Domain, CA: f.CA(), HTTPSPort: f.o.HTTPSPort, HTTPPort: f.o.HTTPPort, Certificates: []Cert{}}
	f.mu.Lock()
	names := make([]string, 0, len(f.names))
	states := map[string]nameState{}
	for n, s := range f.names {
		names = append(names, n)
		states[n] = *s
	}
	st.Refused = f.refused
	f.mu.Unlock()
	sort.Strings(names)
	now := time.Now()
	seen := map[string]bool{}
	for _, n := range names {
		ns := states[n]
		certs := f.cache.AllMatchingCertificates(n)
		if len(certs) == 0 {
			if ns.err != "" {
				st.Certificates = append(st.Certificates, Cert{Names: []string{n}, Error: ns.err})
			}
			continue
		}
		for _, c := range certs {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			cert := Cert{Names: c.Names, Issuer: c.Leaf.Issuer.CommonName, NotBefore: c.Leaf.NotBefore, NotAfter: c.Leaf.NotAfter,
				ExpiresIn: c.Leaf.NotAfter.Sub(now).Seconds(), Renewals: ns.renewals, OCSP: len(c.Certificate.OCSPStaple) > 0}
			if ns.err != "" && ns.errAt.After(ns.obtained) {
				cert.Error = ns.err
			}
			st.Certificates = append(st.Certificates, cert)
		}
	}
	return st
}

// Collector exports ten_tls_certificate_expiry_seconds{name} (Unix time of
// NotAfter) for every certificate in use, and the refused names.
func (f *Front) Collector() prometheus.Collector { return collector{f} }

var (
	expiryDesc = prometheus.NewDesc(prometheus.BuildFQName("ten", "tls", "certificate_expiry_seconds"),
		"When the certificate for a name expires (Unix time of its NotAfter).", []string{"name"}, nil)
	refusedDesc = prometheus.NewDesc(prometheus.BuildFQName("ten", "tls", "refused_names_total"),
		"Names ten refused to request a certificate for (they route to no instance or service).", nil, nil)
	errorDesc = prometheus.NewDesc(prometheus.BuildFQName("ten", "tls", "certificate_errors"),
		"1 when the last attempt to obtain or renew the certificate for a name failed.", []string{"name"}, nil)
)

type collector struct{ f *Front }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- refusedDesc
	ch <- errorDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Status()
	done := map[string]bool{}
	for _, cert := range st.Certificates {
		for _, n := range cert.Names {
			if done[n] {
				continue
			}
			done[n] = true
			if !cert.NotAfter.IsZero() {
				ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), n)
			}
			v := 0.0
			if cert.Error != "" {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(errorDesc, prometheus.GaugeValue, v, n)
		}
	}
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(st.Refused))
}

// CacheDir is where certificates live for a config: cache_dir, or
// DATA_DIR/certs.
func CacheDir(cacheDir, dataDir string) string {
	if cacheDir != "" {
		return cacheDir
	}
	return filepath.Join(dataDir, "certs")
}
