/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Definitions shared by ten's BPF programs. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* From <linux/socket.h> and <linux/in.h>; the libc headers do not build for BPF. */
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* Return values of cgroup_skb and sock_ops programs. */
#define CGROUP_ALLOW 1
