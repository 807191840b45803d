// Package upstream is the router's side of its connections to instances:
// a keep-alive connection that writes a request and waits for the answer in
// one step (Conn), the per-instance pool of idle ones (Pool), and the
// dialer of a directly run app that wakes it through its systemd-held
// socket (AppDialer).
package upstream
