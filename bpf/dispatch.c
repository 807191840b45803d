/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sk_lookup dispatch: steer connections for (protocol, address, port) to an
 * instance's listening socket, with no proxy in the path.
 *
 * One program is attached to a network namespace. For every incoming
 * connection (TCP SYN) or UDP datagram that has no connected socket, the
 * kernel runs it before the ordinary socket lookup. It looks the destination
 * up in `bindings`, an LPM trie keyed by (protocol, port, address prefix), and
 * assigns the socket registered for that destination in `sockets`. The
 * application then accepts the connection as if it had been addressed to it;
 * the peer address is the client's own.
 *
 * The key order (protocol, port, address) makes an address prefix one entry:
 * 127.0.1.0/24 port 7000 is a single key. A port range is one entry per port
 * (7000-7999 under a /24 is 1000 entries, whatever the prefix size). Port 0 is
 * a wildcard for every port; the program looks up the exact port and the
 * wildcard and takes the match with the longer address prefix, the exact port
 * on a tie. This is the scheme of cloudflare/tubular.
 *
 * Direct sockets: a destination may also have a socket in `app_sockets`, the
 * app's own listening socket (ten registers it once an app that binds PORT
 * itself listens, after the wake). A connection goes there first, so that no
 * relay sits between the client and the app and the app sees the client's
 * address; the systemd-held socket in `sockets` takes it when there is none
 * (the app stopped: the kernel drops a closed socket from a sockmap) or the
 * app's socket cannot take it (an IPv4-only socket, an IPv6 connection),
 * and wakes the instance.
 *
 * Light sleep: ten freezes the cgroup of an idle instance and lists its
 * destinations in `frozen`. A connection for a frozen destination is still
 * assigned to its socket, where it waits in the accept backlog, and the
 * program tells ten through the `wake_events` ring buffer, at most once a
 * millisecond per destination; ten thaws the instance, which then accepts
 * it. `frozen` also counts such connections, so that a ten that was down
 * meanwhile finds them when it starts.
 *
 * New maps get new pin names: a changed layout of a pinned map would make a
 * new ten refuse the state an older one pinned.
 */
#include "ten.h"

#define MAX_BINDINGS (1 << 20)
#define MAX_DESTINATIONS 4096
#define MAX_LABEL 64

/*
 * The LPM trie matches the bits after prefixlen from the first one, so the
 * fields are packed in match order. IPv4 addresses are IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so one trie serves both families.
 */
struct binding_key {
	__u32 prefixlen;
	__u8 protocol;
	__be16 port;
	__u8 addr[16];
} __attribute__((packed));

struct binding_value {
	__u32 destination;
	/* Bits of the address prefix (0..128, IPv4 counted as mapped). */
	__u32 prefixlen;
};

/* A destination is what a socket is registered for: label, family, protocol. */
struct destination_key {
	__u8 label[MAX_LABEL];
	__u8 family;
	__u8 protocol;
};

struct destination_metrics {
	/* Lookups that matched a binding of this destination. */
	__u64 lookups;
	/* Matches dropped because no socket was registered. */
	__u64 misses;
	/* Matches dropped because bpf_sk_assign refused the socket. */
	__u64 errors;
};

/* A destination of a frozen instance. */
struct frozen_value {
	/* bpf_ktime_get_boot_ns() when ten froze it (ten writes it). */
	__u64 since_ns;
	/* Connections that arrived while it was frozen. */
	__u64 connections;
	/* bpf_ktime_get_boot_ns() of the last wake event sent. */
	__u64 last_event_ns;
};

/* What the ring buffer carries: the destination a connection arrived for. */
struct wake_event {
	__u32 destination;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct frozen_value);
	__uint(max_entries, MAX_DESTINATIONS);
} frozen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} wake_events SEC(".maps");

/* Wake events per frozen destination are at least this far apart. */
#define WAKE_EVENT_INTERVAL_NS 1000000

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct binding_key);
	__type(value, struct binding_value);
	__uint(max_entries, MAX_BINDINGS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} bindings SEC(".maps");

/* Only user space reads and writes it; it is here to be pinned with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct destination_key);
	__type(value, __u32);
	__uint(max_entries, MAX_DESTINATIONS);
} destinations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, MAX_DESTINATIONS);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, MAX_DESTINATIONS);
} app_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct destination_metrics);
	__uint(max_entries, MAX_DESTINATIONS);
} destination_metrics SEC(".maps");

/* Full key length in bits: protocol, port and a whole address. */
#define BINDING_KEY_BITS ((sizeof(struct binding_key) - sizeof(__u32)) * 8)

SEC("sk_lookup")
int dispatch(struct bpf_sk_lookup *ctx)
{
	struct binding_key key = {
		.prefixlen = BINDING_KEY_BITS,
		.protocol = ctx->protocol,
		.port = bpf_htons(ctx->local_port),
	};
	struct binding_value *exact, *wildcard, *match;
	struct destination_metrics *metrics;
	struct frozen_value *fz;
	struct bpf_sock *sk;
	__u32 destination;
	long err;

	if (ctx->family == AF_INET) {
		__u32 ip4 = ctx->local_ip4;

		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip4, 4);
	} else if (ctx->family == AF_INET6) {
		__u32 ip6[4] = {
			ctx->local_ip6[0],
			ctx->local_ip6[1],
			ctx->local_ip6[2],
			ctx->local_ip6[3],
		};

		__builtin_memcpy(key.addr, ip6, 16);
	} else {
		return SK_PASS;
	}

	exact = bpf_map_lookup_elem(&bindings, &key);
	key.port = 0;
	wildcard = bpf_map_lookup_elem(&bindings, &key);

	match = exact;
	if (!match || (wildcard && wildcard->prefixlen > match->prefixlen))
		match = wildcard;
	if (!match)
		return SK_PASS;

	destination = match->destination;
	metrics = bpf_map_lookup_elem(&destination_metrics, &destination);
	if (metrics)
		__sync_fetch_and_add(&metrics->lookups, 1);

	err = -1;
	sk = bpf_map_lookup_elem(&app_sockets, &destination);
	if (sk) {
		err = bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
	}
	if (err) {
		/*
		 * A binding is a claim on the address: without its socket
		 * the connection is refused rather than handed to whatever
		 * else listens.
		 */
		sk = bpf_map_lookup_elem(&sockets, &destination);
		if (!sk) {
			if (metrics)
				__sync_fetch_and_add(&metrics->misses, 1);
			return SK_DROP;
		}
		err = bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
		if (err) {
			if (metrics)
				__sync_fetch_and_add(&metrics->errors, 1);
			return SK_DROP;
		}
	}

	fz = bpf_map_lookup_elem(&frozen, &destination);
	if (fz) {
		__u64 now = bpf_ktime_get_boot_ns();

		__sync_fetch_and_add(&fz->connections, 1);
		if (now - fz->last_event_ns >= WAKE_EVENT_INTERVAL_NS) {
			struct wake_event ev = { .destination = destination };

			fz->last_event_ns = now;
			bpf_ringbuf_output(&wake_events, &ev, sizeof(ev), 0);
		}
	}
	return SK_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
