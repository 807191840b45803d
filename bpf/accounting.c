/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Activity accounting for ten instances.
 *
 * The three programs are attached to an instance's cgroup (cgroup v2). They
 * count what the instance's sockets send and receive and the TCP connections
 * they open or accept, and remember when that last happened, so that the idle
 * reaper sees traffic on every path (L4 clients, connections the app opens
 * itself, a long download), not only what passes ten's HTTP router.
 *
 * The counters live in cgroup local storage, not in a hash keyed by
 * bpf_skb_cgroup_id(). Local storage belongs to the cgroup the program is
 * *attached* to, so one set of programs and one map serve any number of
 * attachments, a packet of a socket in a nested cgroup is counted once per
 * attached ancestor (never twice for the same attachment, never lost to a
 * child cgroup the map does not know), and the entry disappears with the
 * attachment. User space reads the map with the attach cgroup's id as key.
 * (Checked on 6.x: in cgroup_skb programs bpf_skb_cgroup_id() and
 * bpf_sk_cgroup_id(bpf_sk_fullsock(skb->sk)) both give the socket's cgroup in
 * both directions; bpf_get_current_cgroup_id() gives whatever task the packet
 * interrupted, often the root cgroup, and is useless here.)
 *
 * Which cgroup a packet belongs to is the cgroup of its socket, and that is the
 * cgroup of the process that created the socket. A connection accepted from a
 * listening socket belongs to the listener's cgroup, so for a socket-activated
 * service the accepted connections are counted where the socket unit created
 * the listener, not in the service's cgroup.
 *
 * open_connections is a gauge of the accepted TCP connections that are still
 * open: the idle reaper keeps an instance with an open L4 connection awake
 * even when nothing moves on it, as the HTTP router does for a request in
 * flight. It goes up at BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, which also asks
 * for state callbacks on that socket (BPF_SOCK_OPS_STATE_CB_FLAG), and down
 * at the socket's move to TCP_CLOSE. Connections the app opens itself (a
 * database pool) are not counted, or an app holding one would never sleep.
 * Per CPU, the two ends may land on different CPUs; user space sums them as
 * signed numbers.
 *
 * Traffic between ten itself and an instance is not activity: the router
 * counts its own requests (and keeps an instance with one in flight awake),
 * and its health probes and readiness polls must not keep an idle instance
 * awake. ten marks its sockets to an instance's TCP address with peer_mark
 * (SO_MARK, set at load); the mark rides on every packet they send over
 * loopback. A marked packet, and every packet of a socket that received one
 * (flagged in socket storage), is counted in the bytes and packets but does
 * not move last_ns. So that a handshake with ten does not either, packets of
 * a handshake in progress on the instance's side (the SYN-ACK of a listener,
 * sent on a request socket) and the connection callbacks do not move it:
 * any other client's SYN, data and FIN do.
 *
 * last_in_ns is last_ns without the connections the instance opened itself
 * (a database pool, an API it polls, anything it connect()s to) and without
 * packets that are not TCP (its DNS lookups): what a service with
 * idle_activity = "inbound" counts. A socket is flagged as the app's own
 * (APP_OPENED in socket storage) at its SYN, sent while it is in SYN_SENT;
 * the SYN-ACK that answers it arrives in that state too.
 *
 * The layout of struct activity is part of the pinned state: changing it
 * needs a new pin directory (bpf/acct accountingPinDir).
 */
#include "ten.h"

/* Activity of one attached cgroup on one CPU; user space sums the CPUs. */
struct activity {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
	/* TCP connections established, opened or accepted. */
	__u64 connections;
	/* bpf_ktime_get_boot_ns() of the last packet or connection; 0 = none. */
	__u64 last_ns;
	/* Accepted TCP connections opened minus closed (see above). */
	__u64 open_connections;
	/* last_ns without the app's own connections and non-TCP packets. */
	__u64 last_in_ns;
};

/*
 * A __u64 key (the cgroup id) rather than struct bpf_cgroup_storage_key makes
 * the storage shared by all attach types of one cgroup (kernel 5.9+): ingress,
 * egress and sock_ops count into the same entry.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, struct activity);
} activity SEC(".maps");

/* The SO_MARK of ten's own sockets to instances; set at load, never 0. */
const volatile __u32 peer_mark = 0;

/* Flags of a socket of an instance in ten_peer. */
#define TEN_PEER 1   /* its peer is ten (a marked packet arrived) */
#define APP_OPENED 2 /* the instance opened it (connect: it sent a SYN) */

/* Flags of sockets of an instance (TEN_PEER, APP_OPENED). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} ten_peer SEC(".maps");

/* sock_flags returns sk's flags (a full socket); 0 when it has none. */
static __always_inline __u32 sock_flags(struct bpf_sock *sk)
{
	__u32 *flag = bpf_sk_storage_get(&ten_peer, sk, 0, 0);

	return flag ? *flag : 0;
}

/* set_flag adds f to sk's flags. */
static __always_inline void set_flag(struct bpf_sock *sk, __u32 f)
{
	__u32 *flag = bpf_sk_storage_get(&ten_peer, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (flag)
		*flag |= f;
}

/* touch moves last_ns, and last_in_ns unless the packet is on a socket the
 * instance opened (flags) or is not TCP. */
static __always_inline void touch(struct activity *a, struct bpf_sock *sk, __u32 flags)
{
	__u64 now = bpf_ktime_get_boot_ns();

	a->last_ns = now;
	if (sk && sk->protocol == IPPROTO_TCP && !(flags & APP_OPENED))
		a->last_in_ns = now;
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	struct activity *a = bpf_get_local_storage(&activity, 0);
	struct bpf_sock *sk;
	__u32 flags = 0;

	a->rx_bytes += skb->len;
	a->rx_packets++;
	sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (peer_mark && skb->mark == peer_mark) {
		/* From ten. A listener's packet (SYN, the handshake's ACK) is
		 * shared by all its clients: flag established sockets only. */
		if (sk && sk->state != BPF_TCP_LISTEN)
			set_flag(sk, TEN_PEER);
		return CGROUP_ALLOW;
	}
	if (sk && sk->state != BPF_TCP_LISTEN) {
		flags = sock_flags(sk);
		if (flags & TEN_PEER)
			return CGROUP_ALLOW;
		/* The SYN-ACK of a connection the instance is opening (one
		 * whose SYN was sent before accounting was attached). */
		if (sk->protocol == IPPROTO_TCP && sk->state == BPF_TCP_SYN_SENT)
			flags |= APP_OPENED;
	}
	touch(a, sk, flags);
	return CGROUP_ALLOW;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	struct activity *a = bpf_get_local_storage(&activity, 0);
	struct bpf_sock *sk;
	__u32 flags;

	a->tx_bytes += skb->len;
	a->tx_packets++;
	sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	/* No full socket: a SYN-ACK (sent on a request socket); the SYN it
	 * answers was counted when it arrived, unless it came from ten. */
	if (!sk || sk->state == BPF_TCP_LISTEN)
		return CGROUP_ALLOW;
	if (sk->protocol == IPPROTO_TCP && sk->state == BPF_TCP_SYN_SENT) {
		/* The SYN of a connection the instance opens. */
		set_flag(sk, APP_OPENED);
		flags = APP_OPENED;
	} else {
		flags = sock_flags(sk);
	}
	if (flags & TEN_PEER)
		return CGROUP_ALLOW;
	touch(a, sk, flags);
	return CGROUP_ALLOW;
}

SEC("sockops")
int count_connections(struct bpf_sock_ops *ops)
{
	struct activity *a;

	/* Both ESTABLISHED callbacks run without BPF_SOCK_OPS_*_CB_FLAG opt-in;
	 * STATE_CB only on sockets that asked for it. */
	/* No last_ns here: the packets of a connection's opening and closing
	 * (SYN, FIN, RST) move it, except those to and from ten. */
	switch (ops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		a = bpf_get_local_storage(&activity, 0);
		a->connections++;
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		a = bpf_get_local_storage(&activity, 0);
		a->connections++;
		a->open_connections++;
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] is the old state, args[1] the new one. */
		if (ops->args[1] != BPF_TCP_CLOSE)
			return CGROUP_ALLOW;
		a = bpf_get_local_storage(&activity, 0);
		a->open_connections--;
		break;
	}
	return CGROUP_ALLOW;
}

char __license[] SEC("license") = "Dual BSD/GPL";
