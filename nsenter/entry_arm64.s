#include "textflag.h"

// Linux arm64 system calls and constants.
#define SYS_read	63
#define SYS_ppoll	73
#define SYS_pidfd_send_signal	424
#define SIGKILL	9
#define POLLIN	1
#define WATCHFD	3
#define SYS_close	57
#define SYS_exit_group	94
#define SYS_prctl	167
#define SYS_clone	220
#define SYS_wait4	260
#define SYS_setns	268
#define PR_SET_DUMPABLE	4
#define SIGCHLD	17
#define EINTR	4
#define EINVAL	22
#define PIDFD	4

// func entry()
//
// The ELF entry point, as entry_amd64.s (doc.go says what it does and why).
// argc is at 0(RSP), then argv, which the runtime's entry reads from there,
// so RSP stays as it is. System calls: number in R8, arguments in R0-R5,
// result in R0, every other register kept. R27 is left to the assembler.
TEXT ·entry(SB),NOSPLIT|NOFRAME,$0
	MOVW	$1, R0
	MOVW	R0, ·linked(SB)
	// A watchdog (argc >= 3, argv[1] "init", argv[2] "watchdog") or an
	// exec request (argc >= 4, argv[1] "init", argv[2] "exec").
	MOVD	0(RSP), R0
	CMP	$3, R0
	BLT	runtime
	MOVD	16(RSP), R1
	MOVWU	0(R1), R2
	MOVW	$0x74696e69, R3 // "init"
	CMPW	R3, R2
	BNE	runtime
	MOVBU	4(R1), R2
	CBNZW	R2, runtime
	MOVD	24(RSP), R1
	MOVD	0(R1), R2
	MOVD	$0x676f646863746177, R3 // "watchdog"
	CMP	R3, R2
	BNE	notwatchdog
	MOVBU	8(R1), R2
	CBZW	R2, watchdog
notwatchdog:
	MOVD	0(RSP), R0
	CMP	$4, R0
	BLT	runtime
	MOVWU	0(R1), R2
	MOVW	$0x63657865, R3 // "exec"
	CMPW	R3, R2
	BNE	runtime
	MOVBU	4(R1), R2
	CBNZW	R2, runtime
	MOVW	$1, R0
	MOVW	R0, ·entered(SB)

	// R9 = the namespace flags, from the decimal argv[3].
	MOVD	32(RSP), R1
	MOVD	$0, R9
	MOVD	$10, R3
	MOVBU	0(R1), R2
	CBZ	R2, badargs
digit:
	MOVBU	0(R1), R2
	CBZ	R2, parsed
	SUB	$48, R2
	CMP	$9, R2
	BHI	badargs
	MUL	R3, R9
	ADD	R2, R9
	ADD	$1, R1
	B	digit

parsed:
	// prctl(PR_SET_DUMPABLE, 0): before anything of the container can see us.
	MOVD	$PR_SET_DUMPABLE, R0
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$SYS_prctl, R8
	SVC
	MOVW	$2, R10 // stepPrctl
	CMP	$0, R0
	BLT	fail

	// setns(PIDFD, flags): the user namespace first, then the others, at once.
	MOVD	$PIDFD, R0
	MOVD	R9, R1
	MOVD	$SYS_setns, R8
	SVC
	MOVW	$3, R10 // stepSetns
	CMP	$0, R0
	BLT	fail

	// fork: clone(SIGCHLD, 0, 0, 0, 0). The child runs in the PID namespace.
	MOVD	$SIGCHLD, R0
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$SYS_clone, R8
	SVC
	MOVW	$4, R10 // stepFork
	CMP	$0, R0
	BLT	fail
	BEQ	runtime // the child

	// The parent: hold nothing of the caller's (the sync channel's EOF
	// tells the caller the child exec'd), wait, exit with the child's status.
	MOVD	R0, R9
	MOVD	$0, R10
closefd:
	MOVD	R10, R0
	MOVD	$SYS_close, R8
	SVC
	ADD	$1, R10
	CMP	$PIDFD, R10
	BLE	closefd
wait:
	MOVD	R9, R0
	MOVD	$·status(SB), R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$SYS_wait4, R8
	SVC
	CMN	$EINTR, R0
	BEQ	wait
	CMP	$0, R0
	BLT	waitfailed
	MOVWU	·status(SB), R1
	AND	$0x7f, R1, R2
	CBNZ	R2, signaled
	LSR	$8, R1, R0
	AND	$0xff, R0, R0
	B	exit
signaled:
	ADD	$128, R2, R0
	B	exit
waitfailed:
	MOVD	$125, R0
exit:
	MOVD	$SYS_exit_group, R8
	SVC

// The watchdog: as in entry_amd64.s.
watchdog:
	MOVD	$0, R0
	MOVD	$·watchBuf(SB), R1
	MOVD	$1, R2
	MOVD	$SYS_read, R8
	SVC
	CMN	$EINTR, R0
	BEQ	watchdog
	CMP	$0, R0
	BGT	watchdog
	MOVD	$WATCHFD, R0
	MOVD	$SIGKILL, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$SYS_pidfd_send_signal, R8
	SVC
	MOVW	$WATCHFD, R0
	MOVW	R0, ·watchPoll(SB)    // struct pollfd: fd
	MOVW	$POLLIN, R0
	MOVH	R0, ·watchPoll+4(SB) // events
	MOVD	$10, R0
	MOVD	R0, ·watchTime(SB)    // struct timespec: 10 s
wpoll:
	MOVD	$·watchPoll(SB), R0
	MOVD	$1, R1
	MOVD	$·watchTime(SB), R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$SYS_ppoll, R8
	SVC
	CMN	$EINTR, R0
	BEQ	wpoll
	MOVW	$1, R0
	MOVW	R0, ·watched(SB)
	B	runtime

fail:
	NEG	R0, R0
	MOVW	R0, ·failErrno(SB)
	MOVW	R10, ·failStep(SB)
	B	runtime
badargs:
	MOVW	$EINVAL, R0
	MOVW	R0, ·failErrno(SB)
	MOVW	$1, R0 // stepArgs
	MOVW	R0, ·failStep(SB)
runtime:
	JMP	_rt0_arm64_linux(SB)
