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
#define SYNCFD	3
#define SYS_sendto	206
#define SYS_recvfrom	207
#define SYS_mmap	222
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
#define FLAGBIT_EXECVP	0
#define FLAGBIT_NOTFOUND	1

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
	// A plan follows (argc >= 5, argv[4] "plan"): the child runs it.
	MOVD	0(RSP), R0
	CMP	$5, R0
	BLT	flags
	MOVD	40(RSP), R1
	MOVWU	0(R1), R2
	MOVW	$0x6e616c70, R3 // "plan"
	CMPW	R3, R2
	BNE	flags
	MOVBU	4(R1), R2
	CBNZW	R2, flags
	MOVW	$1, R0
	MOVW	R0, ·planMode(SB)

flags:
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
	BEQ	child

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

child:
	MOVWU	·planMode(SB), R0
	CBZW	R0, runtime
	B	planrun

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

// The plan, as in entry_amd64.s. R19 = the plan's address, R22 its length,
// R20 the record's index, R21 the record, R24 the records left.
planrun:
	MOVD	$SYNCFD, R0
	MOVD	$·planPeek(SB), R1
	MOVD	$8, R2
	MOVD	$(MSG_PEEK|MSG_TRUNC), R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$SYS_recvfrom, R8
	SVC
	CMN	$EINTR, R0
	BEQ	planrun
	MOVD	$-1, R20 // StepTransport
	CMP	$0, R0
	BLT	planerrno
	BEQ	planeof // rabbitc exec gave up
	MOVD	R0, R22
	MOVD	·planPeek(SB), R1
	MOVD	GOMARKER, R2
	CMP	R2, R1
	BEQ	plango
	MOVD	PLANMAGIC, R2
	CMP	R2, R1
	BNE	badplan
	CMP	$40, R22
	BLT	badplan

	// mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
	MOVD	$0, R0
	MOVD	R22, R1
	MOVD	$3, R2
	MOVD	$0x22, R3
	MOVD	$-1, R4
	MOVD	$0, R5
	MOVD	$SYS_mmap, R8
	SVC
	CMP	$0, R0
	BLT	planerrno
	MOVD	R0, R19
planrecv:
	MOVD	$SYNCFD, R0
	MOVD	R19, R1
	MOVD	R22, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$SYS_recvfrom, R8
	SVC
	CMN	$EINTR, R0
	BEQ	planrecv
	CMP	$0, R0
	BLT	planerrno
	CMP	R22, R0
	BNE	badplan
	MOVD	8(R19), R1
	CMP	R22, R1
	BNE	badplan

	// Header: relocations and records must fit.
	MOVD	16(R19), R23 // relocations
	MOVD	24(R19), R24 // records
	CMP	R22, R23
	BHS	badplan
	CMP	R22, R24
	BHS	badplan
	MOVD	$80, R2
	MUL	R24, R2, R2
	LSL	$3, R23, R1
	ADD	R2, R1, R1
	ADD	$40, R1, R1
	CMP	R22, R1
	BHI	badplan

	// Relocations.
	ADD	$40, R19, R21
	SUB	$8, R22, R3
reloc:
	CBZ	R23, relocated
	MOVD	(R21), R1
	CMP	R3, R1
	BHI	badplan
	ADD	R19, R1, R2
	MOVD	(R2), R4
	ADD	R19, R4, R4
	MOVD	R4, (R2)
	ADD	$8, R21, R21
	SUB	$1, R23, R23
	B	reloc
relocated:
	MOVD	$0, R20

	// The records.
step:
	CBZ	R24, planend
	MOVD	56(R21), R1
	TBNZ	$FLAGBIT_NOTFOUND, R1, notfound
	MOVD	8(R21), R0
	MOVD	16(R21), R1
	MOVD	24(R21), R2
	MOVD	32(R21), R3
	MOVD	40(R21), R4
	MOVD	48(R21), R5
	MOVD	0(R21), R8
	SVC
	CMP	$0, R0
	BLT	failed
	MOVD	64(R21), R1
	CBZ	R1, next
	SUB	$4, R22, R2
	CMP	R2, R1
	BHI	badplan
	ADD	R19, R1, R1
	MOVW	R0, (R1)
next:
	ADD	$80, R21, R21
	ADD	$1, R20, R20
	SUB	$1, R24, R24
	B	step

failed:
	NEG	R0, R0
	CMP	$64, R0
	BHS	notok
	MOVD	72(R21), R1
	LSR	R0, R1, R1
	TBNZ	$0, R1, next
notok:
	MOVD	56(R21), R1
	TBZ	$FLAGBIT_EXECVP, R1, planfail
	CMP	$ENOENT, R0
	BEQ	next
	CMP	$ENOTDIR, R0
	BEQ	next
	CMP	$EACCES, R0
	BNE	planfail
	MOVWU	·planDenied(SB), R1
	CBNZW	R1, next
	ADD	$1, R20, R1
	MOVW	R1, ·planDenied(SB)
	B	next

notfound:
	MOVWU	·planDenied(SB), R1
	CBZW	R1, enoent
	SUB	$1, R1, R20
	MOVD	$EACCES, R0
	B	planfail
enoent:
	MOVD	$ENOENT, R0
	B	planfail

plango:
	MOVD	$SYNCFD, R0
	MOVD	$·planPeek(SB), R1
	MOVD	$8, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$SYS_recvfrom, R8
	SVC
	CMN	$EINTR, R0
	BEQ	plango
	B	runtime

planend:
	MOVD	$0, R0 // a plan that does not exec
	B	planfail
badplan:
	MOVD	$-1, R20
	MOVD	$-EINVAL, R0
	B	planerrno
planerrno:
	NEG	R0, R0
	// The plan's packet, if still queued, goes (entry_amd64.s says why).
	MOVD	R0, R21
	MOVD	$SYNCFD, R0
	MOVD	$·planPeek(SB), R1
	MOVD	$8, R2
	MOVD	$MSG_DONTWAIT, R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$SYS_recvfrom, R8
	SVC
	MOVD	R21, R0
planfail:
	MOVD	FAILMAGIC, R1
	MOVD	R1, ·planFail(SB)
	MOVW	R20, ·planFail+8(SB)
	MOVW	R0, ·planFail+12(SB)
	MOVD	$SYNCFD, R0
	MOVD	$·planFail(SB), R1
	MOVD	$16, R2
	MOVD	$MSG_NOSIGNAL, R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$SYS_sendto, R8
	SVC
planeof:
	MOVD	$125, R0
	MOVD	$SYS_exit_group, R8
	SVC
