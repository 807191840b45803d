package system

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// An app that polls something outside every 300 ms (a database, an API)
// stays awake with the default idle_activity ("any": its own traffic is
// activity) and sleeps after idle_timeout with idle_activity = "inbound",
// as it would under tenement, which counts requests. A request still wakes
// it, and its requests count.
func TestIdleActivityInbound(t *testing.T) {
	// The outside server both apps poll; it counts each one's polls.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	polls := map[string]int{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				mu.Lock()
				polls[strings.TrimSpace(line)]++
				mu.Unlock()
			}()
		}
	}()
	count := func(inst string) int {
		mu.Lock()
		defer mu.Unlock()
		return polls[inst]
	}

	s := startTen(t, `
[service.pollany]
command = "ECHO --mode port --poll `+ln.Addr().String()+`"
idle_timeout = 2
start = "eager"

[service.pollin]
command = "ECHO --mode port --poll `+ln.Addr().String()+`"
idle_timeout = 2
idle_activity = "inbound"
start = "eager"

[instances]
pollany = ["a"]
pollin = ["a"]
`)
	waitFor(t, 15*time.Second, "both apps polling", func() bool { return count("pollany:a") >= 2 && count("pollin:a") >= 2 })

	// The inbound one sleeps although it keeps polling until it stops.
	s.waitState("pollin:a", "sleeping", 15*time.Second)
	// The other has polled all along (idle_timeout passed several times
	// over) and is awake.
	before := count("pollany:a")
	time.Sleep(4 * time.Second)
	if st := s.psState("pollany:a"); st != "running" {
		t.Fatalf("pollany:a, whose app polls every 300 ms, is %q, want running\n%s", st, s.mustTen("ps", "--all"))
	}
	if after := count("pollany:a"); after <= before {
		t.Fatalf("pollany:a stopped polling (%d, then %d polls)", before, after)
	}
	// Asleep, the inbound one polls no more.
	asleep := count("pollin:a")
	time.Sleep(time.Second)
	if n := count("pollin:a"); n != asleep {
		t.Errorf("pollin:a polled while asleep: %d, then %d", asleep, n)
	}

	// A request wakes it; requests keep it awake; silence puts it to
	// sleep again.
	for range 4 {
		if body := s.mustGet("a.pollin.localhost", "/"); !strings.HasPrefix(body, "hello from pollin:a") {
			t.Fatalf("pollin:a answered %q", body)
		}
		time.Sleep(time.Second)
	}
	if st := s.psState("pollin:a"); st != "running" {
		t.Fatalf("pollin:a with a request every second is %q, want running", st)
	}
	s.waitState("pollin:a", "sleeping", 15*time.Second)
}
