/*
 * libavx2cap.so: loaded with LD_PRELOAD, it makes the process see its CPU without AVX-512, so
 * every run-time dispatcher in it (std's is_x86_feature_detected!, gemm, macerator inside
 * burn-flex and burn-ndarray, Mesa's llvmpipe, pretrain's math::widest) picks the code it picks
 * on an AVX2-only machine. `cargo xtask test` runs the test suite under it, so an AVX-512
 * machine also checks what machines without AVX-512 compute.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0) makes each `cpuid` instruction of
 * the process raise SIGSEGV; the handler below runs the real instruction with faulting briefly
 * off, clears the AVX-512 and AVX10 feature bits of leaf 7 and leaf 0x24, and resumes after
 * the instruction. The setting is per thread, inherited by threads and forks; execve resets it
 * and LD_PRELOAD (inherited) sets it again in the new program. Any other SIGSEGV gets the
 * default action (the process dies, as without this library).
 *
 * Written by hand because no packaged tool does this: rr and Intel SDE mask CPUID only inside
 * their own record/emulation runs, QEMU's user mode emulates every instruction (far too slow
 * for a test suite), and the kernel's clearcpuid= needs a reboot.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

/* Leaf 7, sub-leaf 0: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL (EBX); VBMI, VBMI2, VNNI, BITALG,
 * VPOPCNTDQ (ECX); 4VNNIW, 4FMAPS, VP2INTERSECT, FP16 (EDX). */
#define LEAF7_EBX_AVX512 \
    ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define LEAF7_ECX_AVX512 ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define LEAF7_EDX_AVX512 ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23))
/* Leaf 7, sub-leaf 1: AVX512_BF16 (EAX) and AVX10 (EDX). */
#define LEAF7_1_EAX_AVX512 (1u << 5)
#define LEAF7_1_EDX_AVX10 (1u << 19)
/* Leaf 0x24 describes AVX10's vector lengths. */
#define LEAF_AVX10 0x24u

static long set_cpuid_faulting(int on) {
    /* ARCH_SET_CPUID's argument is whether `cpuid` is allowed (0: it faults). */
    return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1);
}

static void on_sigsegv(int signal_number, siginfo_t *info, void *context) {
    (void)signal_number;
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    /* A faulting `cpuid` is a general-protection fault (SI_KERNEL) at the bytes 0F A2. */
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        signal(SIGSEGV, SIG_DFL);
        /* A fault recurs when the instruction runs again; a sent signal is sent again. */
        if (info->si_code <= 0) raise(SIGSEGV);
        return;
    }
    unsigned int leaf = (unsigned int)regs[REG_RAX], subleaf = (unsigned int)regs[REG_RCX];
    unsigned int a, b, c, d;
    set_cpuid_faulting(0);
    __cpuid_count(leaf, subleaf, a, b, c, d);
    set_cpuid_faulting(1);
    if (leaf == 7 && subleaf == 0) {
        b &= ~LEAF7_EBX_AVX512;
        c &= ~LEAF7_ECX_AVX512;
        d &= ~LEAF7_EDX_AVX512;
    } else if (leaf == 7 && subleaf == 1) {
        a &= ~LEAF7_1_EAX_AVX512;
        d &= ~LEAF7_1_EDX_AVX10;
    } else if (leaf == LEAF_AVX10) {
        a = b = c = d = 0;
    }
    /* `cpuid` writes the low 32 bits and clears the high ones. */
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigsegv;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid_faulting(1) != 0) {
        /* Refuse to run unfaithfully: a caller asked for an AVX2 view of the CPU. */
        fprintf(stderr, "libavx2cap: CPUID faulting is not available here (%s)\n", strerror(errno));
        _exit(97);
    }
}
