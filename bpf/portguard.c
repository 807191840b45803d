/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Port guard: one instance's processes cannot bind another instance's PORT.
 *
 * A PORT app listens on 127.0.0.1:PORT of the host's network namespace, and
 * while it sleeps nothing holds that port. Any process may bind it then,
 * another tenant's app included, and the app cannot start until the port is
 * free again. (ten's router already refuses to send an instance's requests
 * to a socket of another cgroup; this keeps the port itself.)
 *
 * The two programs are attached once, to the cgroup that holds every
 * instance (tenement.slice), so they run for every bind(2) of a TCP socket
 * by a process of any instance. `owners` maps a port to the cgroup id of
 * the slice of the instance it belongs to. A bind of a port in `owners` in
 * the host's network namespace is allowed only to a process inside that
 * slice: the program walks the calling task's cgroup ancestors (absolute
 * levels, so this holds inside a cgroup namespace too) looking for the
 * owner. Every address counts, not only 127.0.0.1: a wildcard bind
 * (0.0.0.0, ::) of the port would keep the app from binding it too.
 * Anything else (ports no instance owns, other network namespaces, UDP,
 * processes outside the instances' cgroup) is left alone.
 *
 * A refused bind fails with EPERM and is counted in `denied`.
 *
 * New maps get new pin names: a changed layout of a pinned map would make a
 * new ten refuse the state an older one pinned.
 */
#include "ten.h"

/* Deep enough for tenement.slice/service/bucket/instance under any host tree. */
#define MAX_CGROUP_LEVELS 32

#define IPPROTO_MPTCP 262

/* Network namespace cookie of the host (ten's own); set at load. */
const volatile __u64 host_netns = 0;

/* Port (host byte order) -> cgroup id of its instance's slice. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u16);
	__type(value, __u64);
} owners SEC(".maps");

/* Binds refused, per CPU; user space sums them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} denied SEC(".maps");

static __always_inline int guard(struct bpf_sock_addr *ctx)
{
	__u16 port;
	__u64 *owner;
	__u32 zero = 0;
	__u64 *n;
	int level;

	/* An MPTCP socket binds through its first TCP subflow; both count. */
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_MPTCP)
		return 1;
	if (bpf_get_netns_cookie(ctx) != host_netns)
		return 1;
	port = bpf_ntohs((__u16)ctx->user_port);
	owner = bpf_map_lookup_elem(&owners, &port);
	if (!owner)
		return 1;
	for (level = 0; level < MAX_CGROUP_LEVELS; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (id == 0)
			break;
		if (id == *owner)
			return 1;
	}
	n = bpf_map_lookup_elem(&denied, &zero);
	if (n)
		*n += 1;
	return 0;
}

SEC("cgroup/bind4")
int guard_bind4(struct bpf_sock_addr *ctx)
{
	return guard(ctx);
}

SEC("cgroup/bind6")
int guard_bind6(struct bpf_sock_addr *ctx)
{
	return guard(ctx);
}

char __license[] SEC("license") = "Dual BSD/GPL";
