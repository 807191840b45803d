package tlsfront

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tenhq/ten/config"
)

// Routes is the routes function of FromSettings for cfg: whether host
// (under the domain) is an existing instance ({id}.{service}: instance
// says) or a service declared in the config or with instances
// ({service}: hasInstances says). A never-spawned id of a declared service
// does not count: certificates are only requested for names that exist.
func Routes(cfg *config.Config, instance func(service, id string) bool, hasInstances func(service string) bool) func(host string) bool {
	return func(host string) bool {
		sub, ok := strings.CutSuffix(host, "."+cfg.Settings.Domain)
		if !ok {
			return false
		}
		labels := strings.Split(sub, ".")
		switch len(labels) {
		case 1:
			if _, ok := cfg.Services[labels[0]]; ok {
				return true
			}
			return hasInstances(labels[0])
		case 2:
			return instance(labels[1], labels[0])
		}
		return false
	}
}

// Listen returns the HTTPS and HTTP listeners of cfg's [settings.tls]:
// httpsLn and httpLn when systemd passed them, else new ones on
// settings.listen's host and https_port, http_port.
func Listen(cfg *config.Config, httpsLn, httpLn net.Listener) (hl, pl net.Listener, err error) {
	t := cfg.Settings.TLS
	host, _, _ := net.SplitHostPort(cfg.Settings.Listen)
	listen := func(ln net.Listener, port int, key string) (net.Listener, error) {
		if ln != nil {
			return ln, nil
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (settings.tls.%s): %w", addr, key, err)
		}
		return l, nil
	}
	if hl, err = listen(httpsLn, t.HTTPSPort, "https_port"); err != nil {
		return nil, nil, err
	}
	if pl, err = listen(httpLn, t.HTTPPort, "http_port"); err != nil {
		hl.Close()
		return nil, nil, err
	}
	return hl, pl, nil
}
