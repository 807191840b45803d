// Package netns connects to an address inside another network namespace:
// an instance with network = "none" has a private namespace of its own
// (systemd's PrivateNetwork), where 127.0.0.1 is its own loopback, not the
// host's. ten's router dials the app's PORT there directly, with no relay
// process inside the instance: the socket is created in the instance's
// namespace (on a thread that enters it for that one call) and then used
// from anywhere like any other.
package netns
