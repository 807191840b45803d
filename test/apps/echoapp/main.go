// Command echoapp is the tenant app ten's system tests and benchmarks run as
// instances. It can take its socket by systemd socket activation (LISTEN_FDS)
// or bind PORT / SOCKET_PATH itself, like tenement's apps, and it has
// endpoints to check streaming, WebSocket-style upgrades, forwarded headers
// and misbehaviour (never accepting).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	mode := flag.String("mode", "env", "activation (LISTEN_FDS), port (bind 127.0.0.1:$PORT), socket (bind $SOCKET_PATH), env (SOCKET_PATH if set else PORT)")
	neverAccept := flag.Bool("never-accept", false, "listen but never accept a connection")
	startDelay := flag.Duration("start-delay", 0, "sleep before listening")
	flag.Parse()
	inst := os.Getenv("TEN_INSTANCE")
	time.Sleep(*startDelay)

	l, err := listen(*mode)
	if err != nil {
		log.Fatalf("echoapp %s: %v", inst, err)
	}
	fmt.Printf("echoapp %s pid %d listening on %s (mode %s)\n", inst, os.Getpid(), l.Addr(), *mode)
	if *neverAccept {
		select {}
	}
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s host=%s\n", r.Method, r.URL.Path, r.Host)
		fmt.Fprintf(w, "hello from %s pid %d\n", inst, os.Getpid())
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"instance": inst, "pid": os.Getpid(), "uid": os.Getuid(), "started": started,
			"remote": r.RemoteAddr, "host": r.Host,
			"x_forwarded_for": r.Header.Get("X-Forwarded-For"), "x_forwarded_host": r.Header.Get("X-Forwarded-Host"),
			"x_forwarded_proto": r.Header.Get("X-Forwarded-Proto"),
			"port":              os.Getenv("PORT"), "socket_path": os.Getenv("SOCKET_PATH"), "data_dir": os.Getenv("DATA_DIR"),
			"greeting": os.Getenv("GREETING"),
		})
	})
	// /stream?n=5&ms=200 writes n chunks ms apart, flushing each.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		f, _ := w.(http.Flusher)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "chunk %d at %s\n", i, time.Now().Format(time.RFC3339Nano))
			if f != nil {
				f.Flush()
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
	})
	// /echo copies the request body back as it arrives.
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	// /upgrade answers 101 and then echoes lines on the raw connection.
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		sc := bufio.NewScanner(brw)
		for sc.Scan() {
			fmt.Fprintf(c, "echo: %s\n", sc.Text())
		}
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprintln(w, "bye")
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(code) }()
	})
	srv := &http.Server{Handler: mux}
	log.Fatal(srv.Serve(l))
}

func listen(mode string) (net.Listener, error) {
	switch mode {
	case "activation":
		if os.Getenv("LISTEN_FDS") == "" || os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
			return nil, fmt.Errorf("mode activation: LISTEN_FDS/LISTEN_PID not set for this process")
		}
		f := os.NewFile(3, "listen")
		syscall.CloseOnExec(3)
		return net.FileListener(f)
	case "port":
		return net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	case "socket":
		p := os.Getenv("SOCKET_PATH")
		os.Remove(p)
		return net.Listen("unix", p)
	case "env":
		if p := os.Getenv("SOCKET_PATH"); p != "" {
			os.Remove(p)
			return net.Listen("unix", p)
		}
		return net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

var _ = io.EOF
