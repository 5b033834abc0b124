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
#define SYNCFD	3
#define SYS_mmap	9
#define SYS_sendto	44
#define SYS_recvfrom	45
#define MSG_PEEK	2
#define MSG_TRUNC	0x20
#define MSG_NOSIGNAL	0x4000
#define MSG_DONTWAIT	0x40
#define ENOENT	2
#define EACCES	13
#define ENOTDIR	20
#define PLANMAGIC	$0x316e616c70636272
#define GOMARKER	$0x2121216f672d6362
#define FAILMAGIC	$0x4c4941464e414c50
#define FLAG_EXECVP	1
#define FLAG_NOTFOUND	2

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
	// A plan follows (argc >= 5, argv[4] "plan"): the child runs it.
	CMPQ	AX, $5
	JLT	flags
	MOVQ	40(SP), BX
	CMPL	0(BX), $0x6e616c70 // "plan"
	JNE	flags
	CMPB	4(BX), $0
	JNE	flags
	MOVL	$1, ·planMode(SB)

flags:
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
	JEQ	child

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

child:
	CMPL	·planMode(SB), $0
	JEQ	runtime
	JMP	planrun

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

// The plan (plan.go says what it is): the child, in the container's
// namespaces, reads it from the sync channel and makes its system calls.
// R12 = the plan's address, R15 its length, R13 the record's index, R14
// the record, BX the records left. A failure sends a record on the
// channel (planFail: magic, index, errno) and exits with 125.
planrun:
	// A look at the packet: its first 8 bytes and (MSG_TRUNC) its length.
	MOVQ	$SYS_recvfrom, AX
	MOVQ	$SYNCFD, DI
	LEAQ	·planPeek(SB), SI
	MOVQ	$8, DX
	MOVQ	$(MSG_PEEK|MSG_TRUNC), R10
	XORQ	R8, R8
	XORQ	R9, R9
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	planrun
	MOVQ	$-1, R13 // StepTransport
	CMPQ	AX, $0
	JLT	planerrno
	JEQ	planeof // rabbitc exec gave up
	MOVQ	AX, R15
	MOVQ	·planPeek(SB), CX
	MOVQ	GOMARKER, DX
	CMPQ	CX, DX
	JEQ	plango
	MOVQ	PLANMAGIC, DX
	CMPQ	CX, DX
	JNE	badplan
	CMPQ	R15, $40
	JLT	badplan

	// mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
	MOVQ	$SYS_mmap, AX
	XORQ	DI, DI
	MOVQ	R15, SI
	MOVQ	$3, DX
	MOVQ	$0x22, R10
	MOVQ	$-1, R8
	XORQ	R9, R9
	SYSCALL
	CMPQ	AX, $0
	JLT	planerrno
	MOVQ	AX, R12
planrecv:
	MOVQ	$SYS_recvfrom, AX
	MOVQ	$SYNCFD, DI
	MOVQ	R12, SI
	MOVQ	R15, DX
	XORQ	R10, R10
	XORQ	R8, R8
	XORQ	R9, R9
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	planrecv
	CMPQ	AX, $0
	JLT	planerrno
	CMPQ	AX, R15
	JNE	badplan
	CMPQ	8(R12), R15 // the length it says it has
	JNE	badplan

	// Header: relocations and records must fit (each count below the
	// length first, so that the sum cannot overflow).
	MOVQ	16(R12), BX // relocations
	MOVQ	24(R12), CX // records
	CMPQ	BX, R15
	JCC	badplan
	CMPQ	CX, R15
	JCC	badplan
	IMULQ	$80, CX
	LEAQ	40(CX)(BX*8), CX
	CMPQ	CX, R15
	JHI	badplan

	// Relocations: the plan's address added to each word they name.
	LEAQ	40(R12), R14
	MOVQ	R15, DX
	SUBQ	$8, DX
reloc:
	TESTQ	BX, BX
	JZ	relocated
	MOVQ	0(R14), AX
	CMPQ	AX, DX
	JHI	badplan
	MOVQ	(R12)(AX*1), CX
	ADDQ	R12, CX
	MOVQ	CX, (R12)(AX*1)
	ADDQ	$8, R14
	DECQ	BX
	JMP	reloc
relocated:
	MOVQ	24(R12), BX
	XORQ	R13, R13

	// The records: number, 6 arguments, flags, store, accepted errnos.
step:
	TESTQ	BX, BX
	JZ	planend
	MOVQ	56(R14), AX
	TESTQ	$FLAG_NOTFOUND, AX
	JNZ	notfound
	MOVQ	8(R14), DI
	MOVQ	16(R14), SI
	MOVQ	24(R14), DX
	MOVQ	32(R14), R10
	MOVQ	40(R14), R8
	MOVQ	48(R14), R9
	MOVQ	0(R14), AX
	SYSCALL
	CMPQ	AX, $0
	JLT	failed
	MOVQ	64(R14), CX
	TESTQ	CX, CX
	JZ	next
	MOVQ	R15, DX
	SUBQ	$4, DX
	CMPQ	CX, DX
	JHI	badplan
	MOVL	AX, (R12)(CX*1)
next:
	ADDQ	$80, R14
	INCQ	R13
	DECQ	BX
	JMP	step

failed:
	NEGQ	AX
	CMPQ	AX, $64
	JCC	notok
	MOVQ	72(R14), DX
	MOVQ	AX, CX
	SHRQ	CX, DX
	TESTQ	$1, DX
	JNZ	next
notok:
	MOVQ	56(R14), CX
	TESTQ	$FLAG_EXECVP, CX
	JZ	planfail
	CMPQ	AX, $ENOENT
	JEQ	next
	CMPQ	AX, $ENOTDIR
	JEQ	next
	CMPQ	AX, $EACCES
	JNE	planfail
	CMPL	·planDenied(SB), $0
	JNE	next
	LEAQ	1(R13), CX
	MOVL	CX, ·planDenied(SB)
	JMP	next

notfound:
	MOVL	·planDenied(SB), CX
	TESTL	CX, CX
	JZ	enoent
	DECL	CX
	MOVLQZX	CX, R13
	MOVQ	$EACCES, AX
	JMP	planfail
enoent:
	MOVQ	$ENOENT, AX
	JMP	planfail

plango:
	// The Go runtime's way: take the marker off the channel; the spec follows.
	MOVQ	$SYS_recvfrom, AX
	MOVQ	$SYNCFD, DI
	LEAQ	·planPeek(SB), SI
	MOVQ	$8, DX
	XORQ	R10, R10
	XORQ	R8, R8
	XORQ	R9, R9
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	plango
	JMP	runtime

planend:
	XORQ	AX, AX // a plan that does not exec
	JMP	planfail
badplan:
	MOVQ	$-1, R13
	MOVQ	$-EINVAL, AX
	JMP	planerrno
planerrno:
	NEGQ	AX
	// The plan's packet, if still queued, goes: a socket closed with
	// unread data makes its peer's next read fail (ECONNRESET), record and all.
	MOVQ	AX, R14
	MOVQ	$SYS_recvfrom, AX
	MOVQ	$SYNCFD, DI
	LEAQ	·planPeek(SB), SI
	MOVQ	$8, DX
	MOVQ	$MSG_DONTWAIT, R10
	XORQ	R8, R8
	XORQ	R9, R9
	SYSCALL
	MOVQ	R14, AX
planfail:
	MOVQ	FAILMAGIC, CX
	MOVQ	CX, ·planFail(SB)
	MOVL	R13, ·planFail+8(SB)
	MOVL	AX, ·planFail+12(SB)
	MOVQ	$SYS_sendto, AX
	MOVQ	$SYNCFD, DI
	LEAQ	·planFail(SB), SI
	MOVQ	$16, DX
	MOVQ	$MSG_NOSIGNAL, R10
	XORQ	R8, R8
	XORQ	R9, R9
	SYSCALL
planeof:
	MOVQ	$125, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	HLT
