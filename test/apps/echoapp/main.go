// Command echoapp is the tenant app ten's system tests and benchmarks run as
// instances. It can take its socket by systemd socket activation (LISTEN_FDS)
// or bind PORT / SOCKET_PATH itself, like tenement's apps, and it has
// endpoints to check streaming, WebSocket-style upgrades, forwarded headers
// and misbehaviour (never accepting).
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	mode := flag.String("mode", "env", "activation (LISTEN_FDS), port (bind 127.0.0.1:$PORT), socket (bind $SOCKET_PATH), env (SOCKET_PATH if set else PORT), "+
		"tcp (LISTEN_FDS: HTTP on the unix socket, a raw TCP line echo on the TCP ones)")
	neverAccept := flag.Bool("never-accept", false, "listen but never accept a connection")
	startDelay := flag.Duration("start-delay", 0, "sleep before listening")
	healthFile := flag.String("health-file", "", "when this file exists, /health answers with the status code written in it (e.g. 500)")
	crashAfter := flag.Duration("crash-after", 0, "exit with status 1 this long after listening (a crash loop under Restart=on-failure)")
	poll := flag.String("poll", "", "HOST:PORT to connect to every --poll-every once listening, sending the instance's name (an app polling its database or an API)")
	pollEvery := flag.Duration("poll-every", 300*time.Millisecond, "how often --poll connects")
	stopDelay := flag.Duration("stop-delay", 0, "on SIGTERM, go on serving this long before exiting (a slow graceful shutdown)")
	flag.Parse()
	inst := os.Getenv("TEN_INSTANCE")
	if *stopDelay > 0 {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			fmt.Printf("echoapp %s: SIGTERM; exiting in %s\n", inst, *stopDelay)
			time.Sleep(*stopDelay)
			os.Exit(0)
		}()
	}
	time.Sleep(*startDelay)

	var l net.Listener
	var err error
	if *mode == "tcp" {
		l, err = serveRawTCP(inst)
	} else {
		l, err = listen(*mode)
	}
	if err != nil {
		log.Fatalf("echoapp %s: %v", inst, err)
	}
	fmt.Printf("echoapp %s pid %d listening on %s (mode %s)\n", inst, os.Getpid(), l.Addr(), *mode)
	if *neverAccept {
		select {}
	}
	started := time.Now()
	if *poll != "" {
		go func() {
			for {
				if c, err := net.DialTimeout("tcp", *poll, time.Second); err == nil {
					fmt.Fprintf(c, "%s\n", inst)
					c.Close()
				}
				time.Sleep(*pollEvery)
			}
		}()
	}
	if *crashAfter > 0 {
		go func() {
			time.Sleep(*crashAfter)
			fmt.Printf("echoapp %s: crashing on purpose (--crash-after)\n", inst)
			os.Exit(1)
		}()
	}
	// healthCode is what /health answers; /sethealth?code= changes it
	// until the process ends (a restart heals it).
	var healthCode atomic.Int32
	healthCode.Store(http.StatusOK)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s host=%s\n", r.Method, r.URL.Path, r.Host)
		fmt.Fprintf(w, "hello from %s pid %d\n", inst, os.Getpid())
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("health check %s\n", r.Header.Get("User-Agent"))
		code := int(healthCode.Load())
		if *healthFile != "" {
			if b, err := os.ReadFile(*healthFile); err == nil {
				if c, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					code = c
				}
			}
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "health %d\n", code)
	})
	mux.HandleFunc("/sethealth", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil || code < 100 || code > 599 {
			http.Error(w, "want ?code=NNN", http.StatusBadRequest)
			return
		}
		healthCode.Store(int32(code))
		fmt.Fprintf(w, "health now %d\n", code)
	})
	// /log?msg=TEXT&stream=stderr prints TEXT as one line on stdout (default)
	// or stderr: output the journal should show.
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		out := os.Stdout
		if r.URL.Query().Get("stream") == "stderr" {
			out = os.Stderr
		}
		fmt.Fprintln(out, r.URL.Query().Get("msg"))
		fmt.Fprintln(w, "logged")
	})
	// /flood?n=N&msg=TEXT prints N numbered lines "TEXT i" on stdout as
	// fast as it can (a tenant flooding the journal).
	mux.HandleFunc("/flood", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		msg := r.URL.Query().Get("msg")
		// pad=N makes each line N bytes longer.
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		tail := strings.Repeat("x", pad)
		out := bufio.NewWriterSize(os.Stdout, 64<<10)
		for i := 0; i < n; i++ {
			fmt.Fprintf(out, "%s %d%s\n", msg, i, tail)
		}
		out.Flush()
		fmt.Fprintln(w, "flooded", n)
	})
	// /journal?bytes=N&msg=M sends one entry over journald's native
	// protocol whose message is M and N bytes more: journald does not cut
	// those at its LineMax, as it cuts stdout lines.
	mux.HandleFunc("/journal", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		msg := r.URL.Query().Get("msg") + strings.Repeat("j", n)
		var b bytes.Buffer
		b.WriteString("MESSAGE\n")
		binary.Write(&b, binary.LittleEndian, uint64(len(msg)))
		b.WriteString(msg + "\n")
		c, err := net.Dial("unixgram", "/run/systemd/journal/socket")
		if err == nil {
			_, err = c.Write(b.Bytes())
			c.Close()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "sent", len(msg))
	})
	// /files?n=N makes N empty files in DATA_DIR/many.
	mux.HandleFunc("/files", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		dir := filepath.Join(os.Getenv("DATA_DIR"), "many")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for i := range n {
			f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			f.Close()
		}
		fmt.Fprintln(w, "made", n)
	})
	// /write?name=F&bytes=N writes N bytes to DATA_DIR/F (the state directory).
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		name := filepath.Base(r.URL.Query().Get("name"))
		if err := os.WriteFile(filepath.Join(os.Getenv("DATA_DIR"), name), make([]byte, n), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "wrote %d bytes\n", n)
	})
	// /ticks counts a 100 ms ticker since start: frozen, it stops; thawed,
	// it resumes (Go's ticker drops the ticks it missed).
	var ticks atomic.Int64
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			ticks.Add(1)
		}
	}()
	// /alloc?mb=N allocates N MiB more and keeps them (touched, so resident).
	var held [][]byte
	var heldMu sync.Mutex
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		buf := make([]byte, mb<<20)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		heldMu.Lock()
		held = append(held, buf)
		heldMu.Unlock()
		fmt.Fprintf(w, "holding %d MiB more\n", mb)
	})
	mux.HandleFunc("/ticks", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", ticks.Load())
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"instance": inst, "pid": os.Getpid(), "uid": os.Getuid(), "started": started,
			"remote": r.RemoteAddr, "host": r.Host,
			"x_forwarded_for": r.Header.Get("X-Forwarded-For"), "x_forwarded_host": r.Header.Get("X-Forwarded-Host"),
			"x_forwarded_proto": r.Header.Get("X-Forwarded-Proto"),
			// The fleet's peer token: routers must never pass it to an app.
			"x_ten_fleet_auth": r.Header.Get("X-Ten-Fleet-Auth"),
			"port":             os.Getenv("PORT"), "socket_path": os.Getenv("SOCKET_PATH"), "data_dir": os.Getenv("DATA_DIR"),
			"greeting": os.Getenv("GREETING"),
			// The arguments after the flags, as the app was given them.
			"args": flag.Args(),
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
	// /count reads the request body to its end, says in the journal how
	// much arrived and how the read ended, then answers the count.
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Printf("count: %d bytes, err=%v\n", n, err)
		fmt.Fprintf(w, "got %d\n", n)
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
	// /dial?addr=HOST:PORT&n=10&ms=500 answers at once, then in the
	// background opens a TCP connection to addr and writes a line every ms
	// milliseconds, n times: traffic the app makes itself, which no router
	// sees.
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		addr := r.URL.Query().Get("addr")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		c, err := net.Dial("tcp", addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "dialed %s from %s\n", addr, c.LocalAddr())
		go func() {
			defer c.Close()
			for i := 0; i < n; i++ {
				if _, err := fmt.Fprintf(c, "tick %d\n", i); err != nil {
					return
				}
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
		}()
	})
	// /crash exits at once without an answer (a request that crashes the app).
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("echoapp %s: crashing on request\n", inst)
		os.Stdout.Sync()
		os.Exit(3)
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

// serveRawTCP takes every socket systemd passed: it serves a line echo on
// the TCP ones (an L4 tenant: a greeting naming the peer it sees, then
// "echo: LINE" for every line) and returns the unix one for HTTP.
func serveRawTCP(inst string) (net.Listener, error) {
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if n < 1 || os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, fmt.Errorf("mode tcp: LISTEN_FDS/LISTEN_PID not set for this process")
	}
	var httpL net.Listener
	for fd := 3; fd < 3+n; fd++ {
		syscall.CloseOnExec(fd)
		l, err := net.FileListener(os.NewFile(uintptr(fd), "listen"))
		if err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd, err)
		}
		if _, ok := l.(*net.TCPListener); !ok {
			httpL = l
			continue
		}
		fmt.Printf("echoapp %s raw TCP echo on %s\n", inst, l.Addr())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					log.Fatalf("accept: %v", err)
				}
				go echoLines(inst, c)
			}
		}()
	}
	if httpL == nil {
		return nil, fmt.Errorf("mode tcp: no unix socket among the %d passed", n)
	}
	return httpL, nil
}

func echoLines(inst string, c net.Conn) {
	defer c.Close()
	fmt.Printf("tcp connection from %s to %s\n", c.RemoteAddr(), c.LocalAddr())
	fmt.Fprintf(c, "hello from %s pid %d peer %s\n", inst, os.Getpid(), c.RemoteAddr())
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		fmt.Fprintf(c, "echo: %s\n", sc.Text())
	}
}
