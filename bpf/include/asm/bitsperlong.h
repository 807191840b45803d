/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * <linux/bpf.h> from linux-libc-dev includes <asm/bitsperlong.h>, which Debian keeps
 * in an architecture directory (/usr/include/x86_64-linux-gnu/asm). BPF has no
 * such directory; the generic definitions are what BPF wants, so point at them
 * and keep the generated objects independent of the build machine's arch.
 */
#include <asm-generic/bitsperlong.h>
