#include "textflag.h"

// Linux amd64 system calls and constants.
#define SYS_read	0
#define SYS_close	3
#define SYS_poll	7
#define SYS_pidfd_send_signal	424
#define SIGKILL	9
#define POLLIN	1
#define WATCHFD	3
#define SYS_clone	56
#define SYS_wait4	61
#define SYS_prctl	157
#define SYS_exit_group	231
#define SYS_setns	308
#define PR_SET_DUMPABLE	4
#define SIGCHLD	17
#define EINTR	4
#define EINVAL	22
#define PIDFD	4

// func entry()
//
// The ELF entry point (doc.go says what it does and why). The kernel left
// argc at 0(SP), then argv[0..argc-1] and NULL, the environment, the
// auxiliary vector; the runtime's entry reads them from there, so SP stays
// as it is. No Go code has run: no stack checks, no calls, system calls
// only, results in callee-independent registers (SYSCALL clobbers CX, R11).
TEXT ·entry(SB),NOSPLIT|NOFRAME,$0
	MOVL	$1, ·linked(SB)
	// A watchdog (argc >= 3, argv[1] "init", argv[2] "watchdog") or an
	// exec request (argc >= 4, argv[1] "init", argv[2] "exec").
	MOVQ	0(SP), AX
	CMPQ	AX, $3
	JLT	runtime
	MOVQ	16(SP), BX
	CMPL	0(BX), $0x74696e69 // "init"
	JNE	runtime
	CMPB	4(BX), $0
	JNE	runtime
	MOVQ	24(SP), BX
	MOVQ	$0x676f646863746177, CX // "watchdog"
	CMPQ	0(BX), CX
	JNE	notwatchdog
	CMPB	8(BX), $0
	JEQ	watchdog
notwatchdog:
	CMPQ	AX, $4
	JLT	runtime
	CMPL	0(BX), $0x63657865 // "exec"
	JNE	runtime
	CMPB	4(BX), $0
	JNE	runtime
	MOVL	$1, ·entered(SB)

	// R12 = the namespace flags, from the decimal argv[3].
	MOVQ	32(SP), BX
	XORQ	R12, R12
	CMPB	0(BX), $0
	JEQ	badargs
digit:
	MOVBQZX	0(BX), CX
	TESTQ	CX, CX
	JZ	parsed
	SUBQ	$48, CX
	CMPQ	CX, $9
	JHI	badargs
	IMULQ	$10, R12
	ADDQ	CX, R12
	INCQ	BX
	JMP	digit

parsed:
	// prctl(PR_SET_DUMPABLE, 0): before anything of the container can see us.
	MOVQ	$SYS_prctl, AX
	MOVQ	$PR_SET_DUMPABLE, DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	MOVL	$2, R13 // stepPrctl
	CMPQ	AX, $0
	JLT	fail

	// setns(PIDFD, flags): the user namespace first, then the others, at once.
	MOVQ	$SYS_setns, AX
	MOVQ	$PIDFD, DI
	MOVQ	R12, SI
	SYSCALL
	MOVL	$3, R13 // stepSetns
	CMPQ	AX, $0
	JLT	fail

	// fork: clone(SIGCHLD, 0, 0, 0, 0). The child runs in the PID namespace.
	MOVQ	$SYS_clone, AX
	MOVQ	$SIGCHLD, DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	MOVL	$4, R13 // stepFork
	CMPQ	AX, $0
	JLT	fail
	JEQ	runtime // the child

	// The parent: hold nothing of the caller's (the sync channel's EOF
	// tells the caller the child exec'd), wait, exit with the child's status.
	MOVQ	AX, R12
	XORQ	R13, R13
closefd:
	MOVQ	$SYS_close, AX
	MOVQ	R13, DI
	SYSCALL
	INCQ	R13
	CMPQ	R13, $PIDFD
	JLE	closefd
wait:
	MOVQ	$SYS_wait4, AX
	MOVQ	R12, DI
	LEAQ	·status(SB), SI
	XORQ	DX, DX
	XORQ	R10, R10
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	wait
	MOVL	$125, DI
	CMPQ	AX, $0
	JLT	exit
	MOVL	·status(SB), BX
	MOVL	BX, CX
	ANDL	$0x7f, CX
	JNZ	signaled
	SHRL	$8, BX
	ANDL	$0xff, BX
	MOVL	BX, DI
	JMP	exit
signaled:
	LEAL	128(CX), DI
exit:
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	HLT

// The watchdog (argv[1] "init", argv[2] "watchdog"): wait, with no runtime
// started and so no CPU taken from the container's start, until stdin ends
// (rabbitc died), kill the container's init through the pidfd at WATCHFD
// and wait for it to be gone (10 s at most); then the Go runtime starts and
// removes the state.
watchdog:
	MOVQ	$SYS_read, AX
	XORQ	DI, DI
	LEAQ	·watchBuf(SB), SI
	MOVQ	$1, DX
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	watchdog
	CMPQ	AX, $0
	JGT	watchdog
	MOVQ	$SYS_pidfd_send_signal, AX
	MOVQ	$WATCHFD, DI
	MOVQ	$SIGKILL, SI
	XORQ	DX, DX
	XORQ	R10, R10
	SYSCALL
	MOVL	$WATCHFD, ·watchPoll(SB)   // struct pollfd: fd
	MOVW	$POLLIN, ·watchPoll+4(SB) // events
wpoll:
	MOVQ	$SYS_poll, AX
	LEAQ	·watchPoll(SB), DI
	MOVQ	$1, SI
	MOVQ	$10000, DX
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	wpoll
	MOVL	$1, ·watched(SB)
	JMP	runtime

fail:
	NEGQ	AX
	MOVL	AX, ·failErrno(SB)
	MOVL	R13, ·failStep(SB)
	JMP	runtime
badargs:
	MOVL	$EINVAL, ·failErrno(SB)
	MOVL	$1, ·failStep(SB) // stepArgs
runtime:
	JMP	_rt0_amd64_linux(SB)
