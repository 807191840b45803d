package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/tenhq/ten/internal/box"

	"github.com/tenhq/ten/internal/relay"
)

// publish forwards a TCP port of the host to a port inside the box, whose
// network namespace is otherwise unreachable from the host.
type publish struct {
	listen string // host address, e.g. 127.0.0.1:8080
	target string // address in the box, e.g. 127.0.0.1:8080
}

// parsePublish reads [HOSTIP:]HOSTPORT:BOXPORT, as docker's -p. The host IP
// defaults to 127.0.0.1: publishing to the world must be asked for.
func parsePublish(s string) (publish, error) {
	f := strings.Split(s, ":")
	var ip, hostPort, boxPort string
	switch len(f) {
	case 2:
		ip, hostPort, boxPort = "127.0.0.1", f[0], f[1]
	case 3:
		ip, hostPort, boxPort = f[0], f[1], f[2]
	default:
		// An IPv6 host address: [::1]:8080:8080.
		i := strings.LastIndex(s, "]:")
		if !strings.HasPrefix(s, "[") || i < 0 {
			return publish{}, fmt.Errorf("publish %q: want [HOSTIP:]HOSTPORT:BOXPORT", s)
		}
		ports := strings.Split(s[i+2:], ":")
		if len(ports) != 2 {
			return publish{}, fmt.Errorf("publish %q: want [HOSTIP:]HOSTPORT:BOXPORT", s)
		}
		ip, hostPort, boxPort = s[1:i], ports[0], ports[1]
	}
	if net.ParseIP(ip) == nil {
		return publish{}, fmt.Errorf("publish %q: %q is not an IP address", s, ip)
	}
	for _, p := range []string{hostPort, boxPort} {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return publish{}, fmt.Errorf("publish %q: bad port %q", s, p)
		}
	}
	return publish{listen: net.JoinHostPort(ip, hostPort), target: net.JoinHostPort("127.0.0.1", boxPort)}, nil
}

// serve listens on the host and forwards every connection into the box until
// the returned stop is called.
func (p publish) serve(b *box.Box, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", p.listen)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.forward(ctx, b, c, log) })
		}
	})
	return func() {
		cancel()
		ln.Close()
	}, nil
}

func (p publish) forward(ctx context.Context, b *box.Box, c net.Conn, log *slog.Logger) {
	defer c.Close()
	up, err := b.Dial(ctx, "tcp", p.target)
	if err != nil {
		log.Debug("publish: box side", "target", p.target, "err", err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	if err := relay.Both(c, up); err != nil {
		log.Debug("publish: copy", "err", err)
	}
}
