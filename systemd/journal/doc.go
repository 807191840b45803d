// Package journal reads ten's instances' logs from the systemd journal: it
// runs journalctl with a bounded query (Query, Read), parses its JSON
// entries into Entry (ParseEntry: the messages are a tenant's, so every
// field is bounded), and parses a --since value (ParseSince). It needs no
// D-Bus, so the ten command shares its types with the daemon.
package journal
