#include "textflag.h"

TEXT ·handler(SB),NOSPLIT|NOFRAME,$0
	RET

TEXT ·restorer(SB),NOSPLIT|NOFRAME,$0
	MOVQ	$15, AX // rt_sigreturn
	SYSCALL
	INT	$3

// func handlerPCs() (h, r uintptr)
TEXT ·handlerPCs(SB),NOSPLIT,$0-16
	MOVQ	$·handler(SB), AX
	MOVQ	AX, h+0(FP)
	MOVQ	$·restorer(SB), AX
	MOVQ	AX, r+8(FP)
	RET
